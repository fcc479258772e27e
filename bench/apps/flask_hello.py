"""Flask hello-JSON, and the small JSON POST row."""

from flask import Flask, request

app = Flask(__name__)


@app.route("/")
def hello():
    return {"message": "Hello, world!"}


@app.post("/items")
def items():
    """Parse a small JSON document and answer a summary."""
    data = request.get_json()
    return {"name": data["name"], "received": len(data["items"])}


application = app
