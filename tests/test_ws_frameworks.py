"""WebSockets through real frameworks: FastAPI, Starlette, Django Channels,
python-socketio (apps/ws_fastapi, ws_starlette, ws_channels, ws_socketio)."""

import asyncio
import json
import os

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import APPS_DIR
from test_ws_support import connect, ws_sites


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


@pytest.fixture(scope="module")
def fastapi_server(start_caddy, venv_dir):
    srv = start_caddy("ws-fastapi", sites=ws_sites("main:app", APPS_DIR / "ws_fastapi"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def starlette_server(start_caddy, venv_dir):
    srv = start_caddy("ws-starlette", sites=ws_sites("main:app", APPS_DIR / "ws_starlette"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def channels_server(start_caddy, venv_dir):
    srv = start_caddy("ws-channels", sites=ws_sites("chanproj.asgi:application", APPS_DIR / "ws_channels"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def socketio_server(start_caddy, venv_dir):
    srv = start_caddy("ws-socketio", sites=ws_sites("main:app", APPS_DIR / "ws_socketio"))
    yield srv
    srv.stop()


# ---------------------------------------------------------------- FastAPI


def test_fastapi_chat_broadcast(fastapi_server):
    srv = fastapi_server

    async def go():
        async with connect(srv, "/ws/chat/lobby?name=alice") as a:
            assert await recv_json(a) == {"joined": "alice"}
            async with connect(srv, "/ws/chat/lobby?name=bob") as b, \
                    connect(srv, "/ws/chat/other?name=carol") as c:
                assert await recv_json(b) == {"joined": "bob"}
                assert await recv_json(a) == {"joined": "bob"}
                assert await recv_json(c) == {"joined": "carol"}
                r = httpx.get(srv.url("/rooms/lobby"), timeout=10)
                assert r.json() == {"members": 2}

                await a.send("hi from alice")
                assert await recv_json(a) == {"from": "alice", "text": "hi from alice"}
                assert await recv_json(b) == {"from": "alice", "text": "hi from alice"}
                await b.send("hello alice")
                assert await recv_json(b) == {"from": "bob", "text": "hello alice"}
                assert await recv_json(a) == {"from": "bob", "text": "hello alice"}
                # the other room saw none of it
                await c.send("alone")
                assert await recv_json(c) == {"from": "carol", "text": "alone"}
                await b.close(4100, "bob leaves")
                assert await recv_json(a) == {"left": "bob"}
    run(go())
    d = httpx.get(srv.url("/disconnects"), timeout=10).json()["disconnects"]
    assert ["bob", 4100] in d, d
    assert httpx.get(srv.url("/rooms/lobby"), timeout=10).json() == {"members": 0}


def test_fastapi_json_with_path_and_query_params(fastapi_server):
    async def go():
        async with connect(fastapi_server, "/ws/json/42?q=search") as ws:
            await ws.send(json.dumps({"a": [1, 2, "\u00e9"]}))
            assert await recv_json(ws) == {"item": 42, "q": "search", "echo": {"a": [1, 2, "\u00e9"]}}
    run(go())


def test_fastapi_validation_error_refuses_connection(fastapi_server):
    async def go():
        with pytest.raises(InvalidStatus) as ei:
            async with connect(fastapi_server, "/ws/json/not-an-int"):
                pass
        return ei.value.response.status_code
    assert run(go()) == 403


def test_fastapi_websocket_exception_before_accept_is_403(fastapi_server):
    async def go():
        with pytest.raises(InvalidStatus) as ei:
            async with connect(fastapi_server, "/ws/guarded?token=bad"):
                pass
        assert ei.value.response.status_code == 403
        async with connect(fastapi_server, "/ws/guarded?token=ok") as ws:
            assert await ws.recv() == "welcome"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1000
    run(go())


def test_fastapi_close_code_and_reason(fastapi_server):
    async def go():
        async with connect(fastapi_server, "/ws/bye") as ws:
            assert await ws.recv() == "bye"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            return ws.close_code, ws.close_reason
    assert run(go()) == (4000, "done")


# ---------------------------------------------------------------- Starlette


def test_starlette_websocket_endpoint(starlette_server):
    srv = starlette_server

    async def go():
        async with connect(srv, "/ws/endpoint?id=ep1") as ws:
            await ws.send(json.dumps({"n": 1}))
            assert await recv_json(ws) == {"echo": {"n": 1}}
            await ws.send(json.dumps([1, "two"]))
            assert await recv_json(ws) == {"echo": [1, "two"]}
            await ws.close(4500, "endpoint done")
    run(go())

    def seen():
        log = httpx.get(srv.url("/log"), timeout=10).json()["log"]
        return log if "disconnect:ep1:4500" in log else None
    from conftest import wait_until
    log = wait_until(seen, 5, message="on_disconnect with 4500")
    assert "connect:ep1" in log


def test_starlette_iter_text_and_bytes(starlette_server):
    async def go():
        async with connect(starlette_server, "/ws/iter") as ws:
            for word in ["abc", "d\u00e9f"]:
                await ws.send(word)
                assert await ws.recv() == word.upper()
            await ws.send("quit")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1000
        async with connect(starlette_server, "/ws/bytes") as ws:
            data = os.urandom(100000)
            await ws.send(data)
            assert await ws.recv() == data[::-1]
    run(go())


def test_starlette_denial_response(starlette_server):
    async def go():
        with pytest.raises(InvalidStatus) as ei:
            async with connect(starlette_server, "/ws/deny"):
                pass
        return ei.value.response
    resp = run(go())
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    assert resp.body == b"nope"


# ---------------------------------------------------------------- Django Channels


def test_channels_http_still_served(channels_server):
    r = httpx.get(channels_server.url("/health/"), timeout=10)
    assert r.status_code == 200 and r.text == "channels ok"


def test_channels_echo_consumer(channels_server):
    async def go():
        async with connect(channels_server, "/ws/echo/", subprotocols=["echo.v1"]) as ws:
            assert ws.subprotocol == "echo.v1"
            await ws.send("hello channels")
            assert await ws.recv() == "hello channels"
            await ws.send(b"\x00\x01binary")
            assert await ws.recv() == b"\x00\x01binary"
            await ws.close(4201, "bye")
    run(go())

    def seen():
        evs = httpx.get(channels_server.url("/events/"), timeout=10).json()["events"]
        return evs if "echo-disconnect:4201" in evs else None
    from conftest import wait_until
    wait_until(seen, 5, message="EchoConsumer.disconnect(4201)")


def test_channels_sync_consumer(channels_server):
    async def go():
        async with connect(channels_server, "/ws/sync-echo/") as ws:
            for k in range(3):
                await ws.send(f"m{k}")
                assert await asyncio.wait_for(ws.recv(), 10) == f"sync:m{k}"
    run(go())


def test_channels_group_broadcast(channels_server):
    srv = channels_server

    async def go():
        async with connect(srv, "/ws/room/r1/?name=ann") as a, connect(srv, "/ws/room/r1/?name=ben") as b, \
                connect(srv, "/ws/room/r2/?name=cat") as c:
            await a.send(json.dumps({"say": "hello room"}))
            want = {"room": "r1", "from": "ann", "text": "hello room"}
            assert await recv_json(a) == want
            assert await recv_json(b) == want
            await b.send(json.dumps({"say": "hi ann"}))
            want = {"room": "r1", "from": "ben", "text": "hi ann"}
            assert await recv_json(a) == want
            assert await recv_json(b) == want
            await c.send(json.dumps({"say": "r2 only"}))
            assert await recv_json(c) == {"room": "r2", "from": "cat", "text": "r2 only"}
            # nothing from r2 leaked into r1
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(a.recv(), 0.5)
    run(go())


def test_channels_unknown_route_and_close_code(channels_server):
    async def go():
        with pytest.raises((InvalidStatus, ConnectionClosed)) as ei:
            async with connect(channels_server, "/ws/nowhere/") as ws:
                await asyncio.wait_for(ws.recv(), 10)
        if isinstance(ei.value, InvalidStatus):
            assert ei.value.response.status_code in (403, 500)
        async with connect(channels_server, "/ws/close/") as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4003
    run(go())


# ---------------------------------------------------------------- python-socketio


def test_socketio_polling_then_websocket(socketio_server):
    import socketio

    url = socketio_server.base_url

    async def go():
        client = socketio.AsyncClient(reconnection=False)
        inbox = asyncio.Queue()
        client.on("welcome", lambda data: inbox.put_nowait(("welcome", data)))
        client.on("echo_reply", lambda data: inbox.put_nowait(("echo_reply", data)))
        await client.connect(url, wait_timeout=10)  # default transports: polling, then upgrade
        try:
            kind, data = await asyncio.wait_for(inbox.get(), 10)
            assert kind == "welcome" and data["sid"] == client.get_sid()
            # the upgrade to WebSocket completes shortly after connecting
            for _ in range(100):
                if client.transport() == "websocket":
                    break
                await asyncio.sleep(0.05)
            assert client.transport() == "websocket"
            assert await client.call("transport", timeout=10) == "websocket"
            ack = await client.call("echo", {"k": "v\u00e9"}, timeout=10)
            assert ack == "ack:{'k': 'v\u00e9'}"
            kind, data = await asyncio.wait_for(inbox.get(), 10)
            assert (kind, data) == ("echo_reply", {"k": "v\u00e9"})
            big = "x" * 200000
            await client.emit("echo", big)
            kind, data = await asyncio.wait_for(inbox.get(), 10)
            assert (kind, data) == ("echo_reply", big)
        finally:
            await client.disconnect()
    run(go())


def test_socketio_rooms_between_two_clients(socketio_server):
    import socketio

    url = socketio_server.base_url

    async def go():
        clients, inboxes = [], []
        try:
            for _ in range(2):
                c = socketio.AsyncClient(reconnection=False)
                q = asyncio.Queue()
                c.on("said", lambda data, q=q: q.put_nowait(data))
                await c.connect(url, wait_timeout=10)
                clients.append(c)
                inboxes.append(q)
            for c in clients:
                assert await c.call("join", "room1", timeout=10) == "joined:room1"
            await clients[0].emit("say", {"room": "room1", "text": "from zero"})
            for q in inboxes:
                data = await asyncio.wait_for(q.get(), 10)
                assert data == {"from": clients[0].get_sid(), "text": "from zero"}
            await clients[1].emit("say", {"room": "room1", "text": "from one"})
            for q in inboxes:
                data = await asyncio.wait_for(q.get(), 10)
                assert data == {"from": clients[1].get_sid(), "text": "from one"}
        finally:
            for c in clients:
                await c.disconnect()
    run(go())


def test_socketio_websocket_only_transport(socketio_server):
    import socketio

    async def go():
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(socketio_server.base_url, transports=["websocket"], wait_timeout=10)
        try:
            assert client.transport() == "websocket"
            assert await client.call("echo", "direct", timeout=10) == "ack:direct"
        finally:
            await client.disconnect()
    run(go())
    assert httpx.get(socketio_server.url("/health"), timeout=10).text == "ok"
