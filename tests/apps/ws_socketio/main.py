"""python-socketio ASGI app for tests/test_ws_frameworks.py (path /socket.io/).

Events from clients:
  echo(data)          -> emits "echo_reply" with data to the sender; ack "ack:<data>"
  transport()         -> ack: the sender's engine.io transport on the server
  join(room)          -> enters the room; ack "joined:<room>"
  say({room, text})   -> emits "said" {"from": sid, "text"} to the room
On connect the server emits "welcome" {"sid": sid}.
Other paths go to a tiny ASGI app: GET /health -> "ok".
"""

import socketio

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")


@sio.event
async def connect(sid, environ, auth=None):
    await sio.emit("welcome", {"sid": sid}, to=sid)


@sio.event
async def echo(sid, data):
    await sio.emit("echo_reply", data, to=sid)
    return "ack:%s" % (data,)


@sio.event
async def transport(sid):
    return sio.transport(sid)


@sio.event
async def join(sid, room):
    await sio.enter_room(sid, room)
    return "joined:%s" % room


@sio.event
async def say(sid, data):
    await sio.emit("said", {"from": sid, "text": data["text"]}, room=data["room"])


async def other(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
    elif scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


app = socketio.ASGIApp(sio, other_asgi_app=other)
