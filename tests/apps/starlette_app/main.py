"""A Starlette app: routes with path params, a middleware, streaming, JSON."""

import asyncio

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route


class TagMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        response = await call_next(request)
        response.headers["x-middleware"] = "starlette-mw"
        response.headers["x-seen-path"] = request.url.path
        return response


async def homepage(request):
    return PlainTextResponse("starlette home")


async def user(request):
    name = request.path_params["name"]
    return JSONResponse({"user": name, "url": str(request.url_for("user", name=name)),
                         "query": dict(request.query_params)})


async def echo_json(request):
    data = await request.json()
    return JSONResponse({"got": data}, status_code=201)


async def stream(request):
    n = int(request.query_params.get("n", "4"))
    delay = float(request.query_params.get("delay", "0.25"))

    async def gen():
        for i in range(n):
            yield f"tick {i}\n".encode()
            await asyncio.sleep(delay)

    return StreamingResponse(gen(), media_type="text/plain")


app = Starlette(
    routes=[
        Route("/", homepage),
        Route("/users/{name}", user, name="user"),
        Route("/echo", echo_json, methods=["POST"]),
        Route("/stream", stream),
    ],
    middleware=[Middleware(TagMiddleware)],
)
