"""Flask hello-JSON."""

from flask import Flask

app = Flask(__name__)


@app.route("/")
def hello():
    return {"message": "Hello, world!"}


application = app
