"""The definitions publisher's sends: never a silent wait on a failed send."""

import asyncio

import pytest

from milestream.pipeline.topology import OutRecord, Processed
from milestream.runtime.failure import DeliveryFailed
from milestream.worker.app import deliver_now


class FakeTopic:
    """A topic whose sends return futures nobody resolves, or that refuses them."""

    def __init__(self, loop, refuse: bool = False) -> None:
        self.loop = loop
        self.refuse = refuse

    async def send(self, key, value, partition):
        if self.refuse:
            raise ValueError("MessageSizeTooLargeError: larger than max_request_size")
        return self.loop.create_future()


def test_delivering_now_fails_loudly_when_the_broker_refuses_or_never_answers():
    async def scenario():
        loop = asyncio.get_running_loop()
        processed = Processed("applied", [OutRecord("definitions", b"m", b"{}")])
        with pytest.raises(DeliveryFailed, match="to definitions failed: ValueError: MessageSizeTooLarge"):
            await deliver_now({"definitions": FakeTopic(loop, refuse=True)}, processed, timeout_s=1)
        with pytest.raises(DeliveryFailed, match="no acknowledgement from the broker in 0.05 s"):
            await deliver_now({"definitions": FakeTopic(loop)}, processed, timeout_s=0.05)

    asyncio.run(scenario())
