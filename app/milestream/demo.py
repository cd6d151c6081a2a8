"""A small demo stream: one milestone, a few customers, achievements printed.

The milestone: spend 1,000 (gross) in a calendar month, same target for all
customers, with a 50% sub-target, awarded immediately. Every demo customer
makes three purchases this month; most cross the target.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from .kafka_client import client_options, start_client
from .settings import Settings
from .topics import load_topics
from .worker.web import authorization_header

DEMO_MILESTONE_ID = "demo-monthly-spend"


def demo_definition(now: datetime) -> dict:
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return {
        "type": "milestone_definition",
        "milestone_id": DEMO_MILESTONE_ID,
        "name": "Spend 1000 a month",
        "description": "Demo: 1,000 gross spend in a calendar month",
        "starts_at": month_start.isoformat(),
        "ends_at": (month_start + timedelta(days=366)).isoformat(),
        "timezone": "UTC",
        "cycles": {
            "kind": "calendar",
            "frequency": "monthly",
            "start_date": month_start.date().isoformat(),
            "count": 12,
        },
        "group": {
            "targets": [
                {
                    "target_id": "spend",
                    "name": "Monthly spend 1000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "1000",
                    "sub_targets": [{"name": "Halfway", "criterion": "percentage", "value": "50"}],
                }
            ]
        },
    }


def _worker_knows(settings: Settings, milestone_id: str) -> bool:
    url = f"http://{settings.web_host}:{settings.web_port}/definitions"
    request = urllib.request.Request(url, headers=authorization_header(settings))
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback
            return milestone_id in json.loads(response.read())
    except OSError:
        return False


async def run_demo(settings: Settings, customers: int = 20, timeout: float = 90.0) -> int:
    topics = load_topics(settings)
    now = datetime.now(timezone.utc)
    rng = random.Random(7)
    producer = AIOKafkaProducer(**client_options(settings), acks="all")
    await start_client(producer, settings)
    consumer = AIOKafkaConsumer(
        topics["promotions"].name,
        **client_options(settings),
        auto_offset_reset="latest",
        group_id=None,
    )
    await start_client(consumer, settings)
    try:
        await producer.send_and_wait(
            topics["definitions"].name, orjson.dumps(demo_definition(now)), key=DEMO_MILESTONE_ID.encode()
        )
        deadline = time.monotonic() + timeout
        print(f"waiting for the worker at {settings.web_host}:{settings.web_port} to load the demo milestone ...")
        while not _worker_knows(settings, DEMO_MILESTONE_ID):
            if time.monotonic() > deadline:
                print("the worker did not load the demo milestone in time (is `milestream worker` running?)")
                return 1
            await asyncio.sleep(1)
        await consumer.seek_to_end()
        sent = 0
        for c in range(customers):
            customer = f"demo-customer-{c:03d}"
            for n in range(3):
                event = {
                    "type": "transaction",
                    "event_id": f"demo-{now:%Y%m%d%H%M%S}-{c}-{n}",
                    "customer_id": customer,
                    "event_time": (now - timedelta(minutes=10 - n)).isoformat(),
                    "bill_id": f"bill-{now:%H%M%S}-{c}-{n}",
                    "store_id": "store-1",
                    "gross_amount": str(rng.choice([300, 400, 500, 600])),
                }
                await producer.send(topics["transactions"].name, orjson.dumps(event), key=customer.encode())
                sent += 1
        await producer.flush()
        print(f"sent {sent} transactions for {customers} customers; milestone events:")
        seen = 0
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    event = orjson.loads(message.value)
                    seen += 1
                    print(
                        f"  {event['kind']:<12} {event['customer_id']}  {event['target_name']!r}"
                        f"  achieved={event['achieved_value']} defined={event['defined_value']}"
                        f"  triggers={event['trigger_names']}  id={event['event_id']}"
                    )
            if seen and not batches:
                break
        print(f"{seen} milestone events received")
        return 0 if seen else 1
    finally:
        await consumer.stop()
        await producer.stop()
