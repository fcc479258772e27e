"""FastAPI hello-JSON (an async endpoint, so no thread-pool hop), and the small JSON POST row."""

from typing import List

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


@app.get("/")
async def hello():
    return {"message": "Hello, world!"}


class Items(BaseModel):
    name: str
    items: List[int]


@app.post("/items")
async def items(doc: Items):
    """The POST row: a small JSON document, validated into a model, summarized."""
    return {"name": doc.name, "received": len(doc.items)}
