"""``make screenshots``: PNGs of each console page, against a worker with demo data.

    python -m tests.support.screenshots docs/console

Needs a broker at ``KAFKA_BOOTSTRAP_SERVERS`` (the Makefile starts the local one) and Chromium
(tests/support/browser.py). The worker runs on its own topics and is stopped afterwards.
"""

from __future__ import annotations

import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.browser import browser_missing, chromium, log_in, reload_until
from tests.support.worker import WorkerProcess, create_topics, isolated_settings, produce

TOKEN = "console-demo-token"


def demo_definitions(now: datetime) -> list[dict[str, Any]]:
    spend = monthly_gross_definition("monthly-spend", **live_window(now), settings={"leaderboard": True})
    spend["name"] = "Spend 5,000 a month"
    spend["description"] = "Gross spend per calendar month"
    spend["group"]["targets"][0]["sub_targets"] = [
        {"name": "Halfway", "criterion": "percentage", "value": 50},
        {"name": "Almost", "criterion": "percentage", "value": 80},
    ]
    start = (now - timedelta(days=16)).date()
    visits = {
        "type": "milestone_definition",
        "milestone_id": "weekly-regular",
        "name": "Weekly regular",
        "starts_at": f"{start.isoformat()}T00:00:00+00:00",
        "ends_at": (now + timedelta(days=70)).isoformat(),
        "timezone": "UTC",
        "cycles": {"kind": "calendar", "frequency": "weekly", "start_date": start.isoformat(), "count": 12},
        "group": {
            "condition": "all",
            "targets": [
                {
                    "target_id": "visits",
                    "name": "4 visits",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "count",
                    "value": "4",
                },
                {
                    "target_id": "spend",
                    "name": "Spend 2,000",
                    "activity": "transaction",
                    "level": "bill",
                    "kpi": "gross_amount",
                    "value": "2000",
                    "sub_targets": [{"name": "Half", "criterion": "percentage", "value": 50}],
                },
            ],
        },
        "settings": {"leaderboard": True},
    }
    summer = monthly_gross_definition("summer-bonus", **live_window(now + timedelta(days=60), 0, 90))
    summer["name"] = "Summer bonus"
    summer["active"] = False
    return [spend, visits, summer]


def demo_transactions(now: datetime) -> list[dict[str, Any]]:
    events = []
    for n in range(1, 13):
        customer = f"cust-{n:02d}"
        for k in range(1 + n % 5):
            when = now - timedelta(hours=2 + 7 * k + n)
            events.append(transaction(customer, str(150 * n + 40 * k), when.isoformat(), k))
    # After the first monthly cycle closed: a late event.
    events.append(transaction("cust-03", "700", (now - timedelta(days=35)).isoformat(), "late"))
    return events


def shoot(out: Path) -> None:
    import os

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    now = datetime.now(timezone.utc)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        prefix = f"demo{int(time.time())}."
        settings = isolated_settings(bootstrap, Path(folder) / "data", api_token=TOKEN, topic_prefix=prefix)
        create_topics(settings)
        worker = WorkerProcess(settings, Path(folder) / "worker.log")
        worker.start()
        try:
            definitions = demo_definitions(now)
            produce(settings, [("definitions", d["milestone_id"], d) for d in definitions])
            for d in definitions:
                worker.wait_for_definition(d["milestone_id"])
            events = demo_transactions(now)
            produce(settings, [("transactions", e["customer_id"], e) for e in events])
            produce(
                settings,
                [
                    ("transactions", "cust-99", b'{"type": "transaction", "customer_id": "cust-99", "gross_amount":'),
                    ("transactions", "cust-98", {"type": "transaction", "customer_id": "cust-98"}),
                ],
            )
            worker.http_until("/customers/cust-12/milestones", lambda p: len(p.get("milestones", [])) >= 2, timeout=30)
            take(settings.web_port, out, worker)
        finally:
            worker.stop()


def take(port: int, out: Path, worker: WorkerProcess) -> None:
    from selenium.webdriver.common.by import By

    url = f"http://127.0.0.1:{port}"
    driver = chromium(1366, 1000)
    try:

        def save(name: str) -> None:
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(1366, min(max(height + 120, 700), 2600))
            driver.save_screenshot(str(out / f"{name}.png"))
            driver.set_window_size(1366, 1000)
            print(f"wrote {out / name}.png")

        driver.get(f"{url}/console")
        save("login")
        log_in(driver, url, TOKEN)
        save("milestones")
        driver.get(f"{url}/console/milestone?id=monthly-spend")
        save("milestone")
        driver.get(f"{url}/console/edit?id=monthly-spend")
        editor = driver.find_element(By.ID, "definition")
        text = editor.get_attribute("value").replace('"name": "Spend 5,000 a month"', '"name": "Spend more"', 1)
        editor.clear()
        editor.send_keys(text.replace('"value": "5000"', '"value": "-5"'))
        driver.find_element(By.ID, "publish").click()
        save("editor-refused")
        customer = urllib.parse.quote("cust-04")
        driver.get(f"{url}/console/customer?id={customer}")
        save("customer")
        driver.get(f"{url}/console/leaderboards?milestone=monthly-spend&customer=cust-07")
        save("leaderboards")
        reload_until(
            driver,
            f"{url}/console/operations",
            lambda: "cust-98" in driver.page_source and "cust-03" in driver.page_source,
            timeout=30,
        )
        save("operations")
    finally:
        driver.quit()


def main(argv: list[str]) -> int:
    missing = browser_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    shoot(Path(argv[0] if argv else "docs/console"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
