"""A FastAPI app: params, validation, JSON, forms, uploads, streaming,
background tasks, lifespan state, sync endpoints in the thread pool."""

import asyncio
import hashlib
import threading
import time
from contextlib import asynccontextmanager
from typing import List, Optional

from fastapi import BackgroundTasks, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

BACKGROUND = {}
LIFESPAN_EVENTS = []


@asynccontextmanager
async def lifespan(app):
    LIFESPAN_EVENTS.append("startup")
    yield {"db_name": "fake-db", "started_by": "fastapi-lifespan", "counter": 0}
    LIFESPAN_EVENTS.append("shutdown")


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: List[str] = []


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None, limit: int = Query(10, le=100)):
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"created": item.model_dump(), "double_price": item.price * 2}


@app.post("/form")
async def form(name: str = Form(...), age: int = Form(...)):
    return {"name": name, "age": age}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form("")):
    data = await file.read()
    return {"filename": file.filename, "content_type": file.content_type, "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "note": note}


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.2):
    async def gen():
        for i in range(n):
            yield f"line {i}\n"
            await asyncio.sleep(delay)

    return StreamingResponse(gen(), media_type="text/plain")


IDLE_STREAMS = {}


@app.get("/idle-stream/{key}")
async def idle_stream(key: str):
    """An SSE-like feed that waits long between events: it must learn that
    its client left while it waits, not at its next event."""
    async def gen():
        IDLE_STREAMS[key] = "streaming"
        try:
            yield "first\n"
            await asyncio.sleep(60)
            yield "second\n"
        except asyncio.CancelledError:
            IDLE_STREAMS[key] = "cancelled"
            raise
        finally:
            IDLE_STREAMS.setdefault(key + "-finally", "ran")

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/busy-stream/{key}")
async def busy_stream(key: str):
    """A stream that never waits between chunks (a big export): when its
    client leaves, it is left at a yield, and its finally must run then,
    not at the next cyclic garbage collection."""
    async def gen():
        IDLE_STREAMS[key] = "streaming"
        try:
            for _ in range(64 * 16):
                yield b"y" * 65536
        finally:
            IDLE_STREAMS[key + "-finally"] = "ran"

    return StreamingResponse(gen(), media_type="application/octet-stream")


@app.get("/idle-stream-status/{key}")
async def idle_stream_status(key: str):
    return {"state": IDLE_STREAMS.get(key), "finally": IDLE_STREAMS.get(key + "-finally")}


@app.post("/background/{key}")
async def background(key: str, tasks: BackgroundTasks):
    def work():
        time.sleep(0.3)
        BACKGROUND[key] = "done"

    async def awork():
        await asyncio.sleep(0.2)
        BACKGROUND[key + "-async"] = "done"

    tasks.add_task(work)
    tasks.add_task(awork)
    return {"scheduled": key}


@app.get("/background/{key}")
async def background_status(key: str):
    return {"value": BACKGROUND.get(key), "async_value": BACKGROUND.get(key + "-async")}


@app.get("/state")
async def state(request: Request):
    request.state.counter += 1  # per-request copy: never grows across requests
    return {"db_name": request.state.db_name, "started_by": request.state.started_by,
            "counter": request.state.counter, "lifespan_events": LIFESPAN_EVENTS}


@app.get("/sync-sleep")
def sync_sleep(t: float = 0.5):
    time.sleep(min(t, 5.0))
    return {"slept": t, "thread": threading.current_thread().name,
            "main_loop_thread": threading.current_thread().name == "caddysnake-asgi-loop"}


_LOCAL = threading.local()


@app.get("/sync-thread")
def sync_thread():
    """The worker thread a sync endpoint runs on, and how many requests it
    has served (its threading.local state)."""
    _LOCAL.served = getattr(_LOCAL, "served", 0) + 1
    return {"thread": threading.get_ident(), "served": _LOCAL.served}


@app.get("/async-sleep")
async def async_sleep(t: float = 0.5):
    await asyncio.sleep(min(t, 5.0))
    return {"slept": t}


@app.get("/text", response_class=PlainTextResponse)
async def text():
    return "plain \u2603 text"


@app.get("/error")
async def error():
    raise RuntimeError("fastapi-error-marker")
