"""FastAPI hello-JSON (an async endpoint, so no thread-pool hop)."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "Hello, world!"}
