"""The API's Publisher on the Faust app's producer (the worker's StateAccess is worker/state_access.py)."""

from __future__ import annotations

from typing import Any

from .access import Produced


class FaustPublisher:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def send(self, topic: str, key: bytes, value: bytes) -> Produced:
        metadata = await self.app.producer.send_and_wait(topic, key, value, None, None, None)
        return Produced(topic, metadata.partition, metadata.offset)
