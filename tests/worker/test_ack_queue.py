"""The customer agent's acks: in order, and never a silent wait on a failed send."""

import asyncio

import pytest

from milestream.worker.customer_agent import AckQueue, DeliveryFailed


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def run(coro):
    return asyncio.run(coro)


def test_events_are_acked_in_order_once_every_send_is_delivered():
    async def scenario():
        loop = asyncio.get_running_loop()
        acked = []

        async def ack(event):
            acked.append(event)

        queue = AckQueue(ack, timeout_s=10)
        first, second = loop.create_future(), loop.create_future()
        queue.add("e1", [("out", first)])
        queue.add("e2", [("out", second)])
        second.set_result(None)
        await queue.ack_delivered()
        assert acked == []  # e2 is delivered, but e1 before it is not
        first.set_result(None)
        await queue.ack_delivered()
        assert acked == ["e1", "e2"]

    run(scenario())


def test_a_failed_send_raises_and_acks_nothing_from_there_on():
    async def scenario():
        loop = asyncio.get_running_loop()
        acked = []

        async def ack(event):
            acked.append(event)

        queue = AckQueue(ack, timeout_s=10)
        ok, failed, later = loop.create_future(), loop.create_future(), loop.create_future()
        queue.add("e1", [("promotions", ok)])
        queue.add("e2", [("promotions", ok), ("dead-letters", failed)])
        queue.add("e3", [("promotions", later)])
        ok.set_result(None)
        later.set_result(None)
        failed.set_exception(RuntimeError("MessageSizeTooLargeError"))
        with pytest.raises(DeliveryFailed, match="dead-letters.*MessageSizeTooLarge") as raised:
            await queue.ack_delivered()
        assert raised.value.topic == "dead-letters"
        assert acked == ["e1"]

    run(scenario())


def test_a_send_the_broker_never_acknowledges_fails_after_the_delivery_timeout():
    async def scenario():
        loop = asyncio.get_running_loop()
        clock = Clock()

        async def ack(event):
            raise AssertionError("nothing may be acked")

        queue = AckQueue(ack, timeout_s=30, clock=clock)
        queue.add("e1", [("changelog", loop.create_future())])
        clock.now = 29
        await queue.ack_delivered()  # still within the timeout: wait
        clock.now = 31
        with pytest.raises(DeliveryFailed, match="to changelog failed: no acknowledgement from the broker in 30 s"):
            await queue.ack_delivered()

    run(scenario())


class FakeTopic:
    """A topic whose sends return futures the test resolves."""

    def __init__(self, loop, refuse: bool = False) -> None:
        self.futures = []
        self.loop = loop
        self.refuse = refuse

    async def send(self, key, value, partition):
        if self.refuse:
            raise ValueError("MessageSizeTooLargeError: larger than max_request_size")
        self.futures.append(self.loop.create_future())
        return self.futures[-1]


def test_delivering_now_fails_loudly_when_the_broker_refuses_or_never_answers():
    from milestream.pipeline.topology import OutRecord, Processed
    from milestream.worker.customer_agent import deliver_now

    async def scenario():
        loop = asyncio.get_running_loop()
        processed = Processed("applied", [OutRecord("definitions", b"m", b"{}")])
        with pytest.raises(DeliveryFailed, match="to definitions failed: ValueError: MessageSizeTooLarge"):
            await deliver_now({"definitions": FakeTopic(loop, refuse=True)}, processed, timeout_s=1)
        with pytest.raises(DeliveryFailed, match="no acknowledgement from the broker in 0.05 s"):
            await deliver_now({"definitions": FakeTopic(loop)}, processed, timeout_s=0.05)

    run(scenario())
