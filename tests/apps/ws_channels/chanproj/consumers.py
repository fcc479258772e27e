"""Channels consumers.

  EchoConsumer (async)       echoes text and bytes; accepts the "echo.v1"
                             subprotocol when offered; records disconnect codes
  SyncEchoConsumer (sync)    the same through Channels' sync-to-async threads
  RoomConsumer (async JSON)  a group per room on the in-memory channel layer:
                             {"say": ...} is broadcast to the group as
                             {"room": ..., "from": <name>, "text": ...}
  CloseConsumer              closes with code 4003 right after accepting
"""

from channels.generic.websocket import (AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer,
                                        WebsocketConsumer)

EVENTS = []


class EchoConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        if "echo.v1" in self.scope["subprotocols"]:
            await self.accept("echo.v1")
        else:
            await self.accept()

    async def receive(self, text_data=None, bytes_data=None):
        if text_data is not None:
            await self.send(text_data=text_data)
        else:
            await self.send(bytes_data=bytes_data)

    async def disconnect(self, code):
        EVENTS.append("echo-disconnect:%s" % code)


class SyncEchoConsumer(WebsocketConsumer):
    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data="sync:" + (text_data or ""))


class RoomConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = "room-" + self.room
        qs = self.scope["query_string"].decode()
        self.name = qs.partition("name=")[2] or "anon"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive_json(self, content, **kwargs):
        await self.channel_layer.group_send(
            self.group, {"type": "chat.message", "from": self.name, "text": content["say"]})

    async def chat_message(self, event):
        await self.send_json({"room": self.room, "from": event["from"], "text": event["text"]})

    async def disconnect(self, code):
        EVENTS.append("room-disconnect:%s:%s" % (self.name, code))
        await self.channel_layer.group_discard(self.group, self.channel_name)


class CloseConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.close(code=4003)
