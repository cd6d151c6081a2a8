"""The operator console in headless Chromium against a real worker (and broker)."""

from __future__ import annotations

import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.browser import browser_missing, chromium, log_in, reload_until, wait
from tests.support.worker import WorkerProcess, create_topics, isolated_settings, produce

pytestmark = pytest.mark.kafka

TOKEN = "console-browser-token"
NOW = datetime.now(timezone.utc)
HOSTILE_CUSTOMER = "<script>window.pwned=1</script>"
HOSTILE_NAME = "<script>window.pwned=2</script> Spend"


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory):
    folder = tmp_path_factory.mktemp("console")
    settings = isolated_settings(kafka_bootstrap, folder / "data", api_token=TOKEN)
    create_topics(settings)
    process = WorkerProcess(settings, folder / "worker.log")
    process.start()
    definition = monthly_gross_definition("m-console", **live_window(NOW), settings={"leaderboard": True})
    definition["name"] = HOSTILE_NAME
    definition["group"]["targets"][0]["sub_targets"] = [{"name": "Half", "criterion": "percentage", "value": 50}]
    produce(settings, [("definitions", "m-console", definition)])
    process.wait_for_definition("m-console")
    minutes = [NOW - timedelta(minutes=m) for m in (20, 10)]
    produce(
        settings,
        [
            ("transactions", HOSTILE_CUSTOMER, transaction(HOSTILE_CUSTOMER, "1000", minutes[0].isoformat(), 1)),
            ("transactions", HOSTILE_CUSTOMER, transaction(HOSTILE_CUSTOMER, "500", minutes[1].isoformat(), 2)),
            ("transactions", "c-two", transaction("c-two", "4000", minutes[1].isoformat(), 1)),
        ],
    )
    quoted = urllib.parse.quote(HOSTILE_CUSTOMER, safe="")
    page = process.http_until(
        f"/customers/{quoted}/milestones",
        lambda p: any(
            t["achieved"].startswith("1500") for m in p["milestones"] for t in m["open_cycles"][0]["targets"]
        ),
        timeout=30,
    )
    assert page is not None, process.log_tail()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def browser(worker):
    missing = browser_missing()
    if missing:  # `make test` installs them: a missing browser is a broken set-up, not a reason to skip
        pytest.fail(f"no browser for the console test: {missing}")
    driver = chromium()
    yield driver
    driver.quit()


def base(worker: WorkerProcess) -> str:
    return f"http://127.0.0.1:{worker.settings.web_port}"


def test_console_in_a_browser(worker, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    started = time.monotonic()
    url = base(worker)
    # Without the cookie: the login form, and a wrong token is refused.
    browser.get(f"{url}/console/customer")
    assert browser.current_url.endswith("/console/login")
    browser.find_element(By.ID, "token").send_keys("wrong")
    browser.find_element(By.ID, "login").click()

    # The form posts and the login page comes back: wait for it (the old page may still be there).
    def refused(b):
        try:
            return "wrong token" in b.find_element(By.ID, "errors").text
        except Exception:  # not there yet, or gone with the old page
            return False

    WebDriverWait(browser, 10).until(refused, "the login page did not say the token was wrong")
    log_in(browser, url, TOKEN)
    cookie = browser.get_cookie("milestream_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The milestone list: status, timeline, the hostile name as text.
    table = browser.find_element(By.CSS_SELECTOR, "table.milestones")
    assert "m-console" in table.text and "live" in table.text and "active" in table.text
    assert HOSTILE_NAME in table.text
    assert browser.find_elements(By.CSS_SELECTOR, ".timeline .now")
    assert browser.execute_script("return window.pwned === undefined")

    # A customer: searched by id, the progress bar at 1500 of 5000 with the sub-target's mark.
    browser.get(f"{url}/console/customer")
    browser.find_element(By.ID, "customer-id").send_keys(HOSTILE_CUSTOMER)
    browser.find_element(By.ID, "search").click()
    target = wait(lambda: browser.find_elements(By.CSS_SELECTOR, ".target[data-target-id=spend]"), 10)[0]
    assert Decimal(target.get_attribute("data-achieved")) == Decimal(1500)
    assert Decimal(target.get_attribute("data-defined")) == Decimal(5000)
    assert target.find_element(By.CSS_SELECTOR, ".bar").get_attribute("aria-valuenow") == "30"
    assert len(target.find_elements(By.CSS_SELECTOR, ".mark")) == 1
    assert HOSTILE_CUSTOMER in browser.find_element(By.TAG_NAME, "h1").text
    history = browser.find_element(By.CSS_SELECTOR, "table.history").text
    assert "txn-" in history and "spend: +500" in history
    assert browser.execute_script("return window.pwned === undefined")

    # Leaderboards: the hostile customer ranked second, shown as text.
    browser.get(f"{url}/console/leaderboards?milestone=m-console")
    board = browser.find_element(By.CSS_SELECTOR, "table.leaderboard").text
    assert "c-two" in board and HOSTILE_CUSTOMER in board

    # The editor: an invalid definition comes back with the API's reasons, nothing published.
    browser.get(f"{url}/console/edit?id=m-console")
    editor = browser.find_element(By.ID, "definition")
    text = editor.get_attribute("value")
    assert '"milestone_id": "m-console"' in text
    editor.clear()
    editor.send_keys(text.replace('"kpi": "gross_amount"', '"kpi": "no_such_kpi"'))
    browser.find_element(By.ID, "publish").click()
    errors = wait(lambda: browser.find_elements(By.ID, "definition-errors"), 10)[0].text
    assert "kpi" in errors
    assert "refused" in browser.find_element(By.ID, "errors").text

    # A bad record on an input topic shows as a dead letter on the operations page.
    produce(worker.settings, [("transactions", "dl-customer", b'{"type": "transaction", "broken":')])
    found = reload_until(
        browser,
        f"{url}/console/operations",
        lambda: "dl-customer" in browser.find_element(By.CSS_SELECTOR, "body").text,
        timeout=30,
    )
    assert found, browser.find_element(By.TAG_NAME, "main").text
    letters = browser.find_element(By.CSS_SELECTOR, "table.dead-letters").text
    assert '"broken":' in letters
    assert "none in progress" in browser.find_element(By.ID, "backfills").text.lower()
    assert browser.find_elements(By.CSS_SELECTOR, "table.lag") or "No partition" in browser.page_source
    assert time.monotonic() - started < 90
