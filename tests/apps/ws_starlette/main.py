"""Starlette WebSocket app for tests/test_ws_frameworks.py.

  /ws/endpoint   a WebSocketEndpoint (encoding "json") echoing {"echo": data};
                 on_disconnect records the close code
  /ws/iter       a plain route: iter_text() upper-cases every message; "quit" ends it
  /ws/bytes      a plain route: receive_bytes, send_bytes reversed
  /ws/deny       send_denial_response(PlainTextResponse("nope", 401))
  GET /log       what on_connect/on_disconnect saw
"""

import asyncio

from starlette.applications import Starlette
from starlette.endpoints import WebSocketEndpoint
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

LOG = []


class Echo(WebSocketEndpoint):
    encoding = "json"

    async def on_connect(self, websocket):
        LOG.append("connect:%s" % websocket.query_params.get("id", ""))
        await websocket.accept()

    async def on_receive(self, websocket, data):
        await websocket.send_json({"echo": data})

    async def on_disconnect(self, websocket, close_code):
        LOG.append("disconnect:%s:%s" % (websocket.query_params.get("id", ""), close_code))


async def iter_route(websocket: WebSocket):
    await websocket.accept()
    async for text in websocket.iter_text():
        if text == "quit":
            break
        await websocket.send_text(text.upper())
    await websocket.close(code=1000)


async def bytes_route(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            data = await asyncio.wait_for(websocket.receive_bytes(), 60)
            await websocket.send_bytes(data[::-1])
    except WebSocketDisconnect:
        pass


async def deny_route(websocket: WebSocket):
    await websocket.send_denial_response(PlainTextResponse("nope", status_code=401,
                                                           headers={"WWW-Authenticate": "Bearer"}))


async def log(request):
    return JSONResponse({"log": LOG})


app = Starlette(routes=[
    WebSocketRoute("/ws/endpoint", Echo),
    WebSocketRoute("/ws/iter", iter_route),
    WebSocketRoute("/ws/bytes", bytes_route),
    WebSocketRoute("/ws/deny", deny_route),
    Route("/log", log),
])
