"""A worker killed mid-stream (SIGKILL) and restarted: no input applied twice, no output lost.

Every customer makes 20 purchases of 100 towards a 1,000 target with 25/50/75% sub-targets, so the
sub-targets fire at their 3rd, 5th and 8th purchase and the target at the 10th. If a redelivered
purchase were applied twice, some event would fire one purchase early and name the wrong cause; if
one were lost, one purchase late. And what a worker would restore from, the state changelog, must
hold a state for every purchase applied, not only the restarted worker's local store.
"""

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from milestream.state.keys import Namespace, StateKey
from tests.factories import monthly_gross_definition, transaction
from tests.support.worker import WorkerProcess, consume, create_topics, isolated_settings, produce, read_to_end, topic

pytestmark = pytest.mark.kafka

CUSTOMERS = 600
PURCHASES = 20
FIRES_AT = {"sub_target:Quarter": 3, "sub_target:Half": 5, "sub_target:Three quarters": 8, "achievement": 10}


def sub_target_definition(milestone_id: str, now: datetime) -> dict:
    """A 1,000 target with 25/50/75% sub-targets in one cycle around ``now``: purchases of 100 fire
    them at the 3rd, 5th, 8th and 10th purchase (FIRES_AT)."""
    definition = monthly_gross_definition(
        milestone_id,
        target="1000",
        starts_at=(now - timedelta(days=40)).isoformat(),
        ends_at=(now + timedelta(days=40)).isoformat(),
        timezone="UTC",
        # One custom period around today: no cycle boundary among the purchases.
        cycles={
            "kind": "custom",
            "periods": [
                {
                    "start": (now - timedelta(days=5)).date().isoformat(),
                    "end": (now + timedelta(days=5)).date().isoformat(),
                }
            ],
        },
    )
    definition["group"]["targets"][0]["sub_targets"] = [
        {"name": "Quarter", "criterion": "percentage", "value": "25"},
        {"name": "Half", "criterion": "percentage", "value": "50"},
        {"name": "Three quarters", "criterion": "percentage", "value": "75"},
    ]
    return definition


async def produce_purchases(settings, now):
    """Produce the purchases; return {customer: [source of purchase 1, 2, ...]}."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=20, enable_idempotence=True
    )  # idempotent: retries cannot reorder a customer's purchases
    await producer.start()
    sources: dict[str, list[str]] = {}
    try:
        for n in range(PURCHASES):
            futures = []
            for c in range(CUSTOMERS):
                customer = f"cust-{c:04d}"
                event = transaction(customer, "100", (now - timedelta(minutes=PURCHASES - n)).isoformat(), n)
                futures.append(
                    (
                        customer,
                        await producer.send(
                            topic(settings, "transactions"), orjson.dumps(event), key=customer.encode()
                        ),
                    )
                )
            for customer, future in futures:
                meta = await future
                sources.setdefault(customer, []).append(f"{meta.topic}/{meta.partition}/{meta.offset}")
    finally:
        await producer.stop()
    return sources


@dataclass
class CrashRun:
    sources: dict[str, list[str]]
    events: list[dict]
    changelog: list[tuple[bytes | None, bytes | None]]
    log_tail: str


@pytest.fixture(scope="module")
def crash_run(kafka_bootstrap, tmp_path_factory) -> CrashRun:
    """Produce the purchases, start a worker, SIGKILL it mid-stream, restart it, collect the outputs."""
    tmp_path = tmp_path_factory.mktemp("crash")
    now = datetime.now(timezone.utc)
    settings = isolated_settings(kafka_bootstrap, tmp_path / "data", commit_interval_s=1.0, session_timeout_s=6.0)
    create_topics(settings)
    produce(settings, [("definitions", "m-crash", sub_target_definition("m-crash", now))])
    sources = asyncio.run(produce_purchases(settings, now))

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        seen_before_kill = consume(settings, "promotions", lambda seen: len(seen) >= 300, timeout=60)
        worker.kill()
        killed_at = len(seen_before_kill)
        assert 300 <= killed_at < CUSTOMERS * len(FIRES_AT), "the kill must land mid-stream"
        time.sleep(1)
        worker.start()
        expected = CUSTOMERS * len(FIRES_AT)
        events = consume(
            settings, "promotions", lambda seen: len({e["event_id"] for e in seen}) >= expected, timeout=240
        )
        time.sleep(3)  # let any stray duplicate arrive before judging
        events = consume(settings, "promotions", lambda seen: len(seen) >= len(events), timeout=30)
        changelog = wait_for_last_purchases_in_changelog(settings, sources)
    finally:
        tasks = worker.http("/debug/tasks")
        if tasks:
            (tmp_path / "tasks-dump.txt").write_text(tasks)
        worker.stop()
    return CrashRun(sources, events, changelog, worker.log_tail())


def applied_offsets(changelog) -> dict[str, list[str]]:
    """Per customer, the applied offset ("o") of each state record in the changelog, as topic/partition/offset."""
    applied: dict[str, list[str]] = {}
    for raw_key, value in changelog:
        key = StateKey.decode(raw_key or b"")  # every key of the table is namespaced
        if key.namespace != Namespace.CUSTOMER or value is None:  # outboxes, the close index, deletions
            continue
        for position, offset in orjson.loads(value)["o"].items():
            applied.setdefault(key.id, []).append(f"{position}/{offset}")
    return applied


def offset_of(source: str) -> int:
    return int(source.rsplit("/", 1)[1])


def wait_for_last_purchases_in_changelog(settings, sources, timeout: float = 120.0):
    """The changelog once every customer's state records its last purchase (the outputs can all be out
    before the purchases after the 10th are processed)."""
    name = f"{settings.app_id}-customer-state-changelog"
    deadline = time.monotonic() + timeout
    while True:
        changelog = read_to_end(settings, name)
        applied = applied_offsets(changelog)
        if all(purchases[-1] in applied.get(c, ()) for c, purchases in sources.items()) or time.monotonic() > deadline:
            return changelog
        time.sleep(2)


def test_sigkill_mid_stream_loses_no_output_and_duplicates_none(crash_run):
    expected = CUSTOMERS * len(FIRES_AT)
    unique = {e["event_id"]: e for e in crash_run.events}
    fired = {(e["customer_id"], e["kind"], tuple(e["trigger_names"])) for e in unique.values()}
    missing_customers = sorted({c for c in crash_run.sources if sum(1 for f in fired if f[0] == c) < len(FIRES_AT)})
    assert len(unique) == expected, (
        f"{len(unique)} distinct outputs, expected {expected}; customers short of outputs: "
        f"{missing_customers[:10]}\n{crash_run.log_tail}"
    )
    assert len(fired) == expected  # one event per (customer, trigger): no award under a second id
    # Re-sent outputs are byte-identical copies, never new awards.
    for event in crash_run.events:
        assert event == unique[event["event_id"]]


def test_sigkill_mid_stream_applies_every_input_exactly_once(crash_run):
    for event in {e["event_id"]: e for e in crash_run.events}.values():
        trigger = "achievement" if event["kind"] == "achievement" else f"sub_target:{event['trigger_names'][0]}"
        nth = FIRES_AT[trigger]
        assert event["cause"] == crash_run.sources[event["customer_id"]][nth - 1], (trigger, event)
        assert event["achieved_value"] == str(100 * nth)


def test_sigkill_mid_stream_leaves_every_applied_purchase_in_the_changelog(crash_run):
    """Each delivery of a purchase that is acked wrote the customer's state to the changelog first, and
    every purchase was acked at some delivery. So each purchase has its own state record there that
    records it, or a later purchase already applied by the killed worker, as applied: sorted from the
    highest, the k-th applied offset is at least the k-th purchase offset. A purchase acked with no
    changelog write (applied only in the killed worker's local store) leaves a customer a record short."""
    applied = applied_offsets(crash_run.changelog)
    short = {}
    for customer, purchases in crash_run.sources.items():
        wanted = sorted((offset_of(s) for s in purchases), reverse=True)
        written = sorted((offset_of(s) for s in applied.get(customer, ())), reverse=True)
        if len(written) < len(wanted) or any(w < p for w, p in zip(written, wanted)):
            short[customer] = sorted(set(purchases) - set(applied.get(customer, ())))
    assert not short, (
        f"{len(short)} customers have purchases with no state of their own in the changelog: {list(short.items())[:5]}"
    )
