"""``retrysafe console``: the operators' page, served by the real command, driven in
Debian's headless Chromium by Selenium against real stores: an UNKNOWN charge left by an
owner SIGKILLed mid-write is settled through the page, and the next call replays it; a
request without the token changes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from retrysafe import LoopGuard, LoopStop, cache_tool, publish_outcomes, records, session, tool
from retrysafe._records_cli import open_store

from .test_records_cli import ROOT, Unknown, killed_mid_write

ARTIFACTS = Path(os.environ.get("RETRYSAFE_ARTIFACTS", ROOT / "target" / "test-artifacts"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Console:
    """``python -m retrysafe console`` on a free loopback port."""

    def __init__(self, url: str, prefix: str) -> None:
        self.port = _free_port()
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        env = {**os.environ, "RETRYSAFE_CONSOLE_TOKEN": self.token}
        command = [sys.executable, "-m", "retrysafe", "console", "--store", url]
        command += ["--prefix", prefix, "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        said = self.process.stdout.readline()
        assert f"http://127.0.0.1:{self.port}/?token={self.token}" in said, said
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and self.process.poll() is None
                time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def request(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        sent = urllib.request.Request(self.base + path, data=data, headers=headers or {})
        opener = urllib.request.build_opener(_NoRedirect())
        try:
            with opener.open(sent, timeout=10) as answer:
                return int(answer.status), answer.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture(params=["postgres", "redis"])
def unknown(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Unknown]:
    url = str(request.getfixturevalue(f"{request.param}_url"))
    prefix = f"console-{uuid.uuid4().hex[:10]}"
    killed_mid_write(url, prefix, tmp_path)
    store = open_store(url, prefix)
    try:
        yield Unknown(url, prefix, store)
    finally:
        store.clear("")
        store.close()


@pytest.fixture
def console(unknown: Unknown) -> Iterator[Console]:
    made = Console(unknown.url, unknown.prefix)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver_path = os.environ.get("CHROMIUM"), os.environ.get("CHROMEDRIVER")
    if not chromium or not driver_path:
        pytest.skip("CHROMIUM / CHROMEDRIVER not set: Debian's chromium is set up by `make test`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _after_submit(browser: Any) -> Any:
    """The notice of the page a form's post redirected to (a click returns before the new
    page may have loaded)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "notice"))


def test_an_unknown_charge_is_settled_through_the_page_and_replays(
    unknown: Unknown, console: Console, browser: Any, request: pytest.FixtureRequest
) -> None:
    from selenium.webdriver.common.by import By

    guard = LoopGuard(max_identical=1, max_calls=None, mode="message", store=unknown.store)

    @guard
    def lookup(account: str) -> str:
        return "found"

    with session("ops", tenant="acme"):
        lookup("acct-7")
        assert isinstance(lookup("acct-7"), LoopStop)  # a stop, logged for the page

    @cache_tool(store=unknown.store, namespace="weather.today")
    def weather(city: str) -> str:
        return "sunny"

    weather("Paris")
    weather("Oslo")

    @tool.write(registry=None, store=unknown.store)
    def ship(order: str) -> str:
        """Ship an order."""
        return order

    with session("ops", tenant="acme"):
        ship("o-1")
        ship("o-1")  # replayed
    publish_outcomes(unknown.store, every=3600).stop()  # one flush: this process's counts
    browser.get(f"{console.base}/?token={console.token}")  # then a cookie carries it
    assert browser.current_url.rstrip("/") == console.base
    row = browser.find_element(By.CSS_SELECTOR, f'tr.unknown[data-key="{unknown.key}"]')
    assert "charge" in row.text and "conversation=ops" in row.text and "#1" in row.text
    assert "cus_1" not in browser.page_source  # fingerprints and names, never arguments
    assert browser.find_element(By.ID, "plot").is_displayed()
    titles = [
        t.get_attribute("textContent")
        for t in browser.find_elements(By.CSS_SELECTOR, "#plot title")
    ]
    assert any(t.endswith("replayed, 0h ago") for t in titles), titles
    assert "outcomes the processes published" in browser.page_source
    stops = browser.find_element(By.ID, "stops").find_element(By.XPATH, "following-sibling::table")
    assert "lookup" in stops.text and "identical" in stops.text and "2 of 1" in stops.text
    assert "acct-7" not in browser.page_source
    caches = browser.find_element(By.ID, "caches").find_element(
        By.XPATH, "following-sibling::table"
    )
    assert "weather.today 2" in caches.text and "Paris" not in browser.page_source
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"console-{request.node.callspec.id}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000

    row.find_element(By.NAME, "result").send_keys('{"charge": "ch_by_hand"}')
    row.find_element(By.NAME, "apply").click()
    notice = _after_submit(browser).text
    assert unknown.key in notice and "UNKNOWN -> applied" in notice
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr.unknown[data-key="{unknown.key}"]')

    assert {"charge": "ch_by_hand"} == unknown.call()  # replayed, not run
    assert [] == unknown.effects


def test_not_applied_through_the_record_s_page_runs_the_next_call_once(
    unknown: Unknown, console: Console, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{console.base}/?token={console.token}")
    browser.get(f"{console.base}/records/{unknown.key}")
    assert "UNKNOWN" in browser.page_source and unknown.key in browser.page_source
    browser.find_element(By.NAME, "not_applied").click()
    assert "not applied" in _after_submit(browser).text
    assert {"charge": "ch_1"} == unknown.call() == unknown.call()
    assert ["cus_1"] == unknown.effects


def test_a_request_without_the_token_changes_nothing(unknown: Unknown, console: Console) -> None:
    seen = records.show(unknown.store, unknown.key)
    assert seen is not None
    cookie = {"Cookie": f"retrysafe_console={console.token}"}
    form = {"key": unknown.key, "fence": str(seen.fence), "how": "not_applied"}
    # A cross-site form post carries the cookie at most, never the token (SameSite=Strict
    # keeps even the cookie home); a guessed token is refused too.
    assert 403 == console.request("/resolve", form, cookie)[0]
    assert 403 == console.request("/resolve", {**form, "token": console.token})[0]
    assert 403 == console.request("/resolve", {**form, "token": "x" * 64}, cookie)[0]
    # Another name for this address (DNS rebinding) is not served, token or not.
    rebound = {**cookie, "Host": f"attacker.example:{console.port}"}
    assert 421 == console.request("/resolve", {**form, "token": console.token}, rebound)[0]
    assert 421 == console.request("/", None, rebound)[0]
    assert 403 == console.request("/")[0]  # reading needs the token too
    assert 403 == console.request("/?token=wrong")[0]
    after = records.show(unknown.store, unknown.key)
    assert after is not None and "unknown" == after.state and seen.fence == after.fence
    status, page = console.request("/", None, cookie)
    assert 200 == status and unknown.key in page
    # With both, the change is made.
    done = console.request("/resolve", {**form, "token": console.token}, cookie)
    assert 303 == done[0] and records.show(unknown.store, unknown.key) is None
