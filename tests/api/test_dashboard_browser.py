"""The dashboard in a real headless Chromium, against the running stack.

A learner and the API run as processes (`headrace learn`, `headrace serve`) and the
simulator (`headrace simulate --drift-at`) feeds them. Through the page: the charts grow,
a drift alert raised after the drift point shows up, and an operator who typed the admin
token takes a snapshot, restores it and sees the served version change, then rolls back. Without the
token the page offers no admin action, and a call forged from the page is refused.

The browser is Debian's `chromium` with its `chromium-driver` (scripts/bootstrap installs
both); Selenium is pointed at them explicitly, so nothing is downloaded. A screenshot of
the final page goes to artifacts/dashboard.png.
"""

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from guards.alerts import Alert
from headrace.sim.simulator import SimulatorConfig, generate
from learner import alertstore
from stream.settings import StreamSettings
from tests.api.helpers import ROOT, ApiProcess, api_env
from tests.learner.harness import LearnerProcess, learner_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TOKEN = "dashboard-operator-token-0123456789"
ARTIFACTS = ROOT / "artifacts"

COUNT, DRIFT_AT, RATE = 24_000, 10_000, 1_200
"""The simulated stream: records, the record count where tastes and prices shift, and the
publishing rate (records/s): about 20 s of stream."""
SIM = {"seed": 5, "n_users": 500, "n_items": 200}
GUARDS = {
    # The prediction PSI moves while a young model learns; the inputs' PSI does not, until
    # the simulator shifts prices and categories. A small window finds that shift quickly,
    # and a short warm-up arms the monitors well before the drift (the default, 10,000
    # examples, is about as many as this stream teaches). Measured on this stream in
    # process: no alert before the drift; the category PSI fires 1,500 records after it.
    "drift_psi_predictions": "false",
    "drift_psi_window": 500,
    "drift_warmup": 2000,
    "join_window_s": 120,
}

HOSTILE = Alert(
    id="main:main:psi:feature:x:1:0",
    ts=1.0,
    model="main",
    variant="main",
    detector="psi",
    signal="feature:<b>x</b>",
    value=1.0,
    threshold=0.25,
    window=500,
    message='<img src="/nothing" onerror="window.pwned = 1"> crafted',
)
"""An alert from long before the drift, whose text is markup."""

STOPPED = Alert.make(
    n=7,
    ts=100.0,
    model="main",
    variant="main",
    detector="adwin",
    signal="error",
    value=0.12,
    threshold=0.03,
    window=640,
    message="adwin: error rate rose (a stored one, from before the stream)",
    test_statistic=0.1,
    test_threshold=0.04,
)
"""An error alert that stopped 90 s (event time) after it started: its end record follows."""
STOPPED_END = STOPPED.end(ts=190.0, value=0.02, threshold=0.12, window=320, message="over")

T = TypeVar("T")
ALERTS = (By.CSS_SELECTOR, "#alerts li")


def browser() -> webdriver.Chrome:
    for path in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(path) is None:
            pytest.fail(f"{path} is missing: run scripts/bootstrap (apt-get install chromium)")
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,2400")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def until(driver: WebDriver, timeout: float, what: str, check: Callable[[WebDriver], T]) -> T:
    # The page re-renders its lists as data arrives: an element found a moment ago may be
    # gone when the check reads it, which is a reason to look again, not a failure.
    wait = WebDriverWait(
        driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,)
    )
    return wait.until(check, f"waiting for {what}")


def points(driver: WebDriver, selector: str) -> tuple[int, float]:
    canvas = driver.find_element(By.CSS_SELECTOR, selector)
    last = canvas.get_attribute("data-last") or "0"
    return int(canvas.get_attribute("data-points") or 0), float(last)


MIN_BIN = 20
"""The fewest examples a reliability bin needs to be drawn (chart.js's ReliabilityChart)."""


def reliability_points(selector: str) -> Callable[[WebDriver], int | None]:
    """The points the reliability chart drew since the start, once there are some."""

    def check(driver: WebDriver) -> int | None:
        canvas = driver.find_element(By.CSS_SELECTOR, selector)
        drawn = int(canvas.get_attribute("data-cumulative-points") or 0)
        return drawn or None

    return check


def shown(driver: WebDriver, element_id: str) -> bool:
    found = driver.find_elements(By.ID, element_id)
    return bool(found) and found[0].is_displayed()


def answered(action: str) -> Callable[[WebDriver], str | None]:
    """The admin status line once the server answered `action`."""

    def check(driver: WebDriver) -> str | None:
        text: str = driver.find_element(By.ID, "admin-status").text
        return text if text.startswith(action) and "…" not in text else None

    return check


_ALERT_LINES = """return Array.from(document.querySelectorAll(arguments[0]), li => ({
    text: li.innerText.trim(),
    ended: li.getAttribute("data-ended"),
    images: li.getElementsByTagName("img").length,
}));"""


def alert_lines(driver: WebDriver) -> list[dict[str, Any]]:
    """Every listed alert's text, `data-ended` and number of images, read in one script.

    The list is drawn again at each refresh: elements found by one call and read by the
    next may be gone in between (stale), so the page is read at one moment instead."""
    lines: list[dict[str, Any]] = driver.execute_script(_ALERT_LINES, ALERTS[1])
    return lines


def lines_with(driver: WebDriver, text: str) -> list[dict[str, Any]]:
    return [line for line in alert_lines(driver) if text in line["text"]]


def drift_time(config: SimulatorConfig) -> float:
    """Event time of the first record the simulator emits at or after the drift point."""
    for i, record in enumerate(generate(config)):
        if i >= DRIFT_AT:
            return record.ts_ms / 1000
    raise AssertionError("the stream ends before its drift")


@pytest.fixture
def stack(topics: StreamSettings, tmp_path: Path) -> Iterator[tuple[ApiProcess, float]]:
    """Learner, API and simulator running; yields the API and the drift's event time."""
    snapshots = {"snapshot_dir": tmp_path / "snapshots"}
    # Snapshots on (the learner takes the page's), none of its own during the test.
    learner_settings = {**snapshots, **GUARDS, "snapshot_interval_s": 3600}
    learner = LearnerProcess(learner_env(topics, **learner_settings), tmp_path / "learn.log")
    api = ApiProcess(api_env(topics, admin_token=TOKEN, **snapshots), tmp_path / "api.log")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    config = SimulatorConfig(start=start, count=COUNT, drift_at=DRIFT_AT, **SIM)
    argv = [sys.executable, "-m", "headrace.cli", "simulate", "--start", start.isoformat()]
    argv += ["--count", str(COUNT), "--drift-at", str(DRIFT_AT), "--rate", str(RATE)]
    argv += ["--seed", str(SIM["seed"]), "--users", str(SIM["n_users"])]
    argv += ["--items", str(SIM["n_items"]), "--quiet"]
    with (tmp_path / "simulate.log").open("ab") as log:
        simulator = subprocess.Popen(
            argv, cwd=ROOT, env=learner_env(topics), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        api.wait_listening()
        yield api, drift_time(config)
    finally:
        simulator.kill()
        simulator.wait(timeout=10)
        api.close()
        learner.close()


def confirm(driver: WebDriver, dialog: str, button: str, action: str, lineage: str) -> None:
    """Confirm the open `dialog` with `button`; the page reports `action` done, and the
    served lineage then shows `lineage`."""
    until(driver, 30, "the confirmation", lambda d: shown(d, dialog))
    driver.find_element(By.ID, button).click()
    status = until(driver, 40, f"the {action}", answered(action))
    assert status is not None and "done" in status, status
    until(
        driver,
        30,
        f"the lineage after the {action}",
        lambda d: lineage in d.find_element(By.ID, "lineage").text,
    )


def test_watch_learn_drift_snapshot_and_restore_in_the_browser(
    stack: tuple[ApiProcess, float], topics: StreamSettings, redis_client: redis.Redis
) -> None:
    api, drifted_at = stack
    # Alerts carry text from the stream: one with markup must show as text, not run.
    with redis_client.pipeline() as pipe:
        alertstore.append(pipe, topics.key_prefix, [HOSTILE, STOPPED, STOPPED_END])
        pipe.execute()
    driver = browser()
    try:
        driver.get(f"{api.url}/dashboard")
        # The running learner may list alerts of its own above it: look for this one.
        until(driver, 30, "the stored alert", lambda d: lines_with(d, HOSTILE.message) != [])
        assert lines_with(driver, HOSTILE.message)[0]["images"] == 0
        assert driver.execute_script("return window.pwned") is None

        # An alert and the record that closed it: one line, with its test, start and stop.
        until(driver, 30, "the stopped alert", lambda d: len(lines_with(d, STOPPED.message)) == 1)
        lines = alert_lines(driver)
        (stopped,) = [line for line in lines if STOPPED.message in line["text"]]
        assert stopped["ended"] == "190"
        assert "test 0.1000 (threshold 0.0400)" in stopped["text"]
        assert "stopped" in stopped["text"] and "(1.5 min)" in stopped["text"]
        assert "ongoing" in next(line["text"] for line in lines if HOSTILE.message in line["text"])
        # The closing record is not a line of its own.
        assert not [line for line in lines if line["text"].endswith("· over")]

        # Without the token: no admin action anywhere, and a call forged from the page
        # (no header, then a made-up token) is refused by the server.
        until(
            driver,
            30,
            "a served version",
            lambda d: d.find_element(By.ID, "version").get_attribute("data-version"),
        )
        assert not shown(driver, "admin") and not shown(driver, "take-snapshot")
        assert driver.find_elements(By.CSS_SELECTOR, "button.restore") == []
        forged: list[int] = driver.execute_async_script(FORGE)
        assert forged == [401, 403, 401]

        # The charts update live.
        until(driver, 30, "chart points", lambda d: points(d, "#chart-rate")[0] > 1)
        first = points(driver, "#chart-rate")
        until(driver, 30, "the charts to move", lambda d: points(d, "#chart-rate") > first)
        variant = '#variants canvas[data-variant="main"][data-metric="log_loss"]'
        until(driver, 30, "the loss chart", lambda d: points(d, variant)[0] > 1)
        # The reliability chart draws a point per bin of the served table with enough
        # examples, since the start (and over the rolling window).
        reliability = '#variants canvas[data-variant="main"][data-metric="reliability"]'
        drawn = until(driver, 60, "the reliability chart", reliability_points(reliability))
        served_bins = httpx.get(f"{api.url}/models").json()["models"][0]["variants"]
        table = next(v["reliability"] for v in served_bins if v["name"] == "main")
        # Counts only grow: the table served now has at least the bins drawn then.
        assert drawn is not None and 0 < drawn <= sum(row["count"] >= MIN_BIN for row in table)

        # A drift alert raised after the drift point (event time) appears in the list.
        def alert_times(d: WebDriver) -> list[float]:
            return [float(a.get_attribute("data-ts") or 0) for a in d.find_elements(*ALERTS)]

        until(driver, 60, "a drift alert", lambda d: max(alert_times(d), default=0) >= drifted_at)
        timeline = driver.find_element(By.ID, "alert-timeline")
        until(driver, 30, "the timeline", lambda d: timeline.get_attribute("data-alerts") != "0")

        # The operator unlocks the admin actions with the token.
        driver.find_element(By.ID, "token").send_keys(TOKEN)
        driver.find_element(By.ID, "token-submit").click()
        until(driver, 30, "the admin panel", lambda d: shown(d, "take-snapshot"))
        assert (
            driver.execute_script("return sessionStorage.getItem('headrace.adminToken')") == TOKEN
        )

        driver.find_element(By.ID, "take-snapshot").click()
        row = until(
            driver,
            40,
            "the snapshot",
            lambda d: d.find_elements(By.CSS_SELECTOR, "#snapshots tbody tr[data-snapshot]"),
        )[0]
        snapshot_id = row.get_attribute("data-snapshot")
        assert snapshot_id

        # Restore it, with replay, after the confirmation; the served version changes.
        before = driver.find_element(By.ID, "version").get_attribute("data-version")
        row.find_element(By.CSS_SELECTOR, "button.restore").click()
        confirm(driver, "restore-dialog", "restore-replay", "restore", lineage=snapshot_id)
        after = driver.find_element(By.ID, "version").get_attribute("data-version")
        assert after and before and int(after) > int(before)
        served = httpx.get(f"{api.url}/models").json()["models"][0]
        assert served["lineage"]["restored_from"] == snapshot_id

        # Roll back to the last known good model (the snapshot just taken), confirmed.
        driver.find_element(By.ID, "rollback").click()
        confirm(
            driver, "rollback-dialog", "rollback-confirm", "roll back", "rolled back from version"
        )
        logs: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
        # Script errors only: the refused forged calls above are logged as network errors.
        errors = [e for e in logs if e["level"] == "SEVERE" and e["source"] != "network"]
        assert errors == []
        ARTIFACTS.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    except WebDriverException:
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "dashboard-failed.png"))
        raise
    finally:
        driver.quit()


FORGE = """
const done = arguments[arguments.length - 1];
const codes = [];
const send = (headers) => fetch("/admin/snapshots", {method: "POST", headers})
  .then((r) => codes.push(r.status));
send({}).then(() => send({Authorization: "Bearer not-the-token-0123456789"}))
  .then(() => fetch("/admin/restore", {method: "POST", headers: {"Content-Type":
    "application/json"}, body: JSON.stringify({snapshot: "latest"})}))
  .then((r) => { codes.push(r.status); done(codes); });
"""
