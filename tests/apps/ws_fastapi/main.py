"""FastAPI WebSocket app for tests/test_ws_frameworks.py.

  /ws/chat/{room}?name=N   chat room: every text message is broadcast as JSON
                           {"from": N, "text": ...} to all members (sender too);
                           joining/leaving is announced as {"joined"/"left": N}
  /ws/json/{item}?q=...    receive_json / send_json echo with path and query params
  /ws/guarded?token=...    raises WebSocketException(1008) before accept unless token=ok
  /ws/bye                  accepts, sends "bye", closes with 4000 "done"
  GET /rooms/{room}        number of members
  GET /disconnects         [(name, code)] recorded on disconnect
"""

import asyncio

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status

app = FastAPI()
ROOMS = {}
DISCONNECTS = []


async def broadcast(room, message):
    members = list(ROOMS.get(room, ()))
    await asyncio.gather(*(ws.send_json(message) for ws in members), return_exceptions=True)


@app.websocket("/ws/chat/{room}")
async def chat(websocket: WebSocket, room: str, name: str = "anon"):
    await websocket.accept()
    ROOMS.setdefault(room, set()).add(websocket)
    await broadcast(room, {"joined": name})
    try:
        while True:
            text = await asyncio.wait_for(websocket.receive_text(), 60)
            await broadcast(room, {"from": name, "text": text})
    except WebSocketDisconnect as exc:
        DISCONNECTS.append((name, exc.code))
    finally:
        ROOMS[room].discard(websocket)
    await broadcast(room, {"left": name})


@app.websocket("/ws/json/{item}")
async def json_echo(websocket: WebSocket, item: int, q: str = "none"):
    await websocket.accept()
    try:
        while True:
            data = await asyncio.wait_for(websocket.receive_json(), 60)
            await websocket.send_json({"item": item, "q": q, "echo": data})
    except WebSocketDisconnect:
        pass


@app.websocket("/ws/guarded")
async def guarded(websocket: WebSocket, token: str = ""):
    if token != "ok":
        raise WebSocketException(code=status.WS_1008_POLICY_VIOLATION)
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close()


@app.websocket("/ws/bye")
async def bye(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_text("bye")
    await websocket.close(code=4000, reason="done")


@app.get("/rooms/{room}")
async def room_size(room: str):
    return {"members": len(ROOMS.get(room, ()))}


@app.get("/disconnects")
async def disconnects():
    return {"disconnects": DISCONNECTS}
