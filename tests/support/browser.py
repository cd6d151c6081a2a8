"""Headless Chromium driven by Selenium, for the console's browser tests and screenshots.

Debian's ``chromium`` and ``chromium-driver`` packages (the Makefile installs them when missing).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import Any

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def browser_missing() -> str | None:
    """Why no browser can run here, or None."""
    if shutil.which("chromedriver") is None:
        return "chromedriver not installed (apt-get install chromium chromium-driver; `make test` does it)"
    if not any(shutil.which(name) for name in CHROMIUM):
        return "chromium not installed"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed (the test extra)"
    return None


def chromium(width: int = 1366, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    binary = next(path for name in CHROMIUM if (path := shutil.which(name)))
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    return driver


def log_in(driver: Any, base_url: str, token: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base_url}/console")
    assert driver.current_url.endswith("/console/login"), driver.current_url
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait(lambda: driver.current_url.endswith("/console"), 10, lambda: driver.current_url)


def wait(holds: Callable[[], Any], timeout: float, describe: Callable[[], Any] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = holds()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {describe()}")
        time.sleep(0.25)


def reload_until(driver: Any, url: str, holds: Callable[[], Any], timeout: float) -> Any:
    """Load ``url`` again until ``holds()`` (pages show state as of the worker's last checkpoint)."""
    deadline = time.monotonic() + timeout
    while True:
        driver.get(url)
        value = holds()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)
