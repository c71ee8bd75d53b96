"""
The web console in a real headless Chromium (the system's, through its
chromedriver and Selenium) against a real C{twistd -n meetr} on the test
node: the targets page shows a down target with its error, the explorer
charts written points (the chart's own data is compared), a group-by
draws one line per group, the fetch form runs a fetch of a loopback node,
and with auth on a wrong token shows the message.  Each test saves a
screenshot in its temporary folder (and in C{MEETR_SCREENSHOTS}, a
folder, when that is set) and fails on any error in the browser's
console.

Without Chromium the tests fail under CI (C{CI=true}) and are skipped
elsewhere; C{make test} installs it when it can.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.loopback import closedPort, pageNode
from tests.support import Daemon, daemonSettings, http

pytestmark = [pytest.mark.cassandra, pytest.mark.daemon]

CHROMIUM = Path(os.environ.get("MEETR_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("MEETR_CHROMEDRIVER",
                                   "/usr/bin/chromedriver"))
READ_TOKEN = "console-read-token-0123"
ADMIN_TOKEN = "console-admin-token-0123"
WAIT = 30.0
PAGE = (b"# TYPE console_demo gauge\nconsole_demo{disk=\"sda\"} 3\n"
        b"console_demo{disk=\"sdb\"} 4\n")


@pytest.fixture(scope="module")
def liveNode() -> Iterator[str]:
    """
    A loopback node serving a Prometheus page of two samples.
    """
    with pageNode(PAGE) as address:
        yield address


@pytest.fixture(scope="module")
def deadNode() -> str:
    """
    A loopback node that refuses connections.
    """
    return f"127.0.0.1:{closedPort()}"


@contextmanager
def _ready(process: Daemon) -> Iterator[Daemon]:
    """
    Start C{process}, wait until it is ready, and stop it on leaving.
    """
    process.start()
    try:
        process.waitReady()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def daemon(node: tuple[str, int], keyspace: str, liveNode: str,
           deadNode: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Daemon]:
    """
    A real daemon without tokens, hunting the live node (job C{web}) and
    the dead one (job C{db}) every second.
    """
    process = Daemon(tmp_path_factory.mktemp("console"), daemonSettings(
        keyspace, node, hunter={"targets": [
            {"job": "web", "nodes": [liveNode], "interval": "1s"},
            {"job": "db", "nodes": [deadNode], "interval": "1s",
             "labels": {"team": "storage"}},
        ]}))
    with _ready(process):
        yield process


@pytest.fixture(scope="module")
def authDaemon(node: tuple[str, int], keyspace: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """
    A real daemon with a read and an admin token.
    """
    process = Daemon(tmp_path_factory.mktemp("console-auth"), daemonSettings(
        keyspace, node, auth={"tokens": [
            {"token": READ_TOKEN, "roles": ["read"]},
            {"token": ADMIN_TOKEN, "roles": ["admin"]}]}))
    with _ready(process):
        yield process


def _chromiumOptions(userData: Path) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-quic", "--no-first-run",
                 "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 f"--user-data-dir={userData}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
    """
    The system's Chromium, headless, with a fresh profile, driven by its
    chromedriver (nothing downloaded).
    """
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = (f"{CHROMIUM} or {CHROMEDRIVER} is missing: "
                   f"apt-get install chromium chromium-driver")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(
        service=Service(executable_path=str(CHROMEDRIVER)),
        options=_chromiumOptions(tmp_path / "chromium-profile"))
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """
    The console in the browser: opening views, waiting for what they
    show, its console log, screenshots.
    """

    def __init__(self, driver: Any, tmp_path: Path) -> None:
        self.driver = driver
        self.tmp_path = tmp_path
        self.logs: list[dict[str, Any]] = []

    def open(self, daemon: Daemon, hash: str) -> None:
        self.driver.get(f"{daemon.base}/{hash}")

    def find(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def findAll(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def waitFor(self, condition: Callable[[], Any], what: str,
                timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = condition()
            except Exception:  # an element not there yet, or stale
                found = None
            if found:
                return found
            time.sleep(0.1)
        self.screenshot("timed-out")
        raise AssertionError(f"waited {timeout}s for {what}; browser log: "
                             f"{self.browserLog()}")

    def chart(self) -> dict[str, Any] | None:
        return self.driver.execute_script(
            "const c = window.meetrConsole && window.meetrConsole.chart;"
            "return c ? {data: c.data, labels: c.series.slice(1).map("
            "s => s.label)} : null;")

    def browserLog(self) -> list[dict[str, Any]]:
        self.logs.extend(self.driver.get_log("browser"))
        return self.logs

    def errors(self, allowed: Callable[[dict[str, Any]], bool] = lambda e:
               False) -> list[dict[str, Any]]:
        return [entry for entry in self.browserLog()
                if entry["level"] == "SEVERE" and not allowed(entry)]

    def screenshot(self, name: str) -> Path:
        path = self.tmp_path / f"{name}.png"
        self.driver.save_screenshot(str(path))
        folder = os.environ.get("MEETR_SCREENSHOTS")
        if folder:
            shutil.copy(path, Path(folder) / f"console-{name}.png")
        return path


@pytest.fixture()
def console(browser: Any, tmp_path: Path) -> Console:
    """
    The console in the browser, saving screenshots in the test's folder.
    """
    return Console(browser, tmp_path)


def _writePoints(daemon: Daemon, points: list[dict[str, Any]]) -> None:
    reply = daemon.post("/1.0/metrics", json.dumps(points).encode(),
                        "application/json")
    assert reply.status == 200, reply.body


def _minute(ms: int) -> int:
    return ms - ms % 60_000


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def test_targetsShowDownTargetWithError(browser: Any, daemon: Daemon,
                                        deadNode: str, liveNode: str,
                                        console: Console) -> None:
    """The targets page lists the up and the down target, the down one first with the error /targets gives, and its filters by state and job keep only the matching rows; on a phone-wide window nothing overflows sideways."""
    console.open(daemon, "#/targets")
    down = console.waitFor(
        lambda: [row for row in console.findAll("#targets-table tbody tr")
                 if row.get_attribute("data-health") == "down"
                 and row.find_element("css selector", ".error-text").text],
        "a down target with its error")[0]
    console.waitFor(lambda: console.findAll(
        "#targets-table tbody tr[data-health=up]"), "the up target")
    rows = console.findAll("#targets-table tbody tr")
    assert [r.get_attribute("data-node") for r in rows] == [deadNode, liveNode]
    reported = {t["node"]: t for t in daemon.get("/targets").json()["targets"]}
    error = down.find_element("css selector", ".error-text").text
    assert error and reported[deadNode]["last_error"] == error
    assert down.get_attribute("data-job") == "db"
    assert "down" in down.find_element("css selector", ".badge").text
    assert "1 down" in console.find("#targets-summary").text
    console.screenshot("targets")

    from selenium.webdriver.support.select import Select

    Select(console.find("#targets-state")).select_by_value("up")
    assert [r.get_attribute("data-node") for r in console.findAll(
        "#targets-table tbody tr")] == [liveNode]
    assert "state=up" in browser.current_url
    Select(console.find("#targets-state")).select_by_value("")
    Select(console.find("#targets-job")).select_by_value("db")
    assert [r.get_attribute("data-node") for r in console.findAll(
        "#targets-table tbody tr")] == [deadNode]

    browser.set_window_size(375, 800)
    console.open(daemon, "#/targets")
    console.waitFor(lambda: console.findAll("#targets-table tbody tr"),
                    "the targets on a phone-wide window")
    assert browser.execute_script(
        "return document.documentElement.scrollWidth") <= 375
    console.screenshot("targets-phone")
    assert console.errors() == []


def test_targetsRefreshByThemselves(daemon: Daemon,
                                    console: Console) -> None:
    """The targets page reads /targets again by itself: the time it says it was updated moves on without a reload."""
    console.open(daemon, "#/targets")
    first = console.waitFor(lambda: console.find("#targets-meta").text,
                            "the first update")
    later = console.waitFor(
        lambda: (lambda t: t if t != first else None)(
            console.find("#targets-meta").text), "a refresh", timeout=12)
    assert later.startswith("Updated ")
    assert console.errors() == []


def test_explorerChartsWrittenSeries(daemon: Daemon,
                                     console: Console) -> None:
    """A query in the URL draws a chart whose data are the written points, one a minute, equal to the search API's answer for the same query."""
    nowMs = int(time.time() * 1000)
    start = _minute(nowMs) - 20 * 60_000
    values = [round(10 + 5 * (i % 7) + i / 10, 3) for i in range(20)]
    _writePoints(daemon, [
        {"metric_id": "console.cpu", "ts": start + i * 60_000 + 10_000,
         "value": v, "tags": {"host": "a"}} for i, v in enumerate(values)])
    query = {"metric": "console.cpu", "aggregation": "avg", "interval": "1m",
             "range": "custom", "from": _iso(start),
             "to": _iso(start + 20 * 60_000 - 1000)}
    console.open(daemon, "#/explore?" + urllib.parse.urlencode(query))
    chart = console.waitFor(console.chart, "the chart")
    xs, ys = chart["data"]
    assert xs == [(start + i * 60_000) / 1000 for i in range(20)]
    assert ys == values
    assert chart["labels"] == ["avg(console.cpu)"]
    answer = daemon.get("/1.0/metrics", metric="console.cpu",
                        aggregation="avg", interval="1m",
                        **{"from": query["from"], "to": query["to"]}).json()
    assert [v for _, v in answer["points"]] == ys
    assert console.find("#explore-metric").get_attribute("value") \
        == "console.cpu"
    assert "Line chart of avg of console.cpu" in console.find(
        "#chart").get_attribute("aria-label")
    console.screenshot("explore")
    assert console.errors() == []


def test_groupByDrawsOneLinePerGroup(browser: Any, daemon: Daemon,
                                     console: Console) -> None:
    """Typing a metric and choosing a group-by in the form draws one line per tag value, each with its own points, and the URL then holds the query."""
    from selenium.webdriver.support.select import Select

    nowMs = int(time.time() * 1000)
    start = _minute(nowMs) - 10 * 60_000
    hosts = {"a": 1.0, "b": 20.0, "c": 300.0}
    _writePoints(daemon, [
        {"metric_id": "console.mem", "ts": start + i * 60_000 + 5_000,
         "value": base + i, "tags": {"host": host, "dc": "eu"}}
        for host, base in hosts.items() for i in range(10)])
    console.open(daemon, "#/explore")
    metric = console.find("#explore-metric")
    metric.send_keys("console.m")
    console.waitFor(lambda: "console.mem" in [
        o.get_attribute("value")
        for o in console.findAll("#explore-metric-names option")],
        "console.mem offered as the metric is typed")
    metric.send_keys("em")
    console.find("#explore-interval").send_keys("1m")
    console.find("#explore-aggregation").click()
    console.waitFor(lambda: "host" in [
        o.get_attribute("value") for o in console.findAll(
            "#explore-group option")], "host offered to group by")
    Select(console.find("#explore-group")).select_by_value("host")
    Select(console.find("#explore-aggregation")).select_by_value("max")
    console.find("#explore-form button[type=submit]").click()
    chart = console.waitFor(
        lambda: (lambda c: c if c and len(c["labels"]) == 3 else None)(
            console.chart()), "a chart of three lines")
    assert chart["labels"] == ["host=a", "host=b", "host=c"]
    xs, *lines = chart["data"]
    first = xs.index((start) / 1000)
    for line, base in zip(lines, hosts.values()):
        assert line[first:first + 10] == [base + i for i in range(10)]
        assert all(v is None for v in line[:first] + line[first + 10:])
    state = urllib.parse.parse_qs(browser.current_url.split("#/explore?")[1])
    assert state["group_by"] == ["host"]
    assert state["metric"] == ["console.mem"]
    assert state["aggregation"] == ["max"]
    rows = console.findAll("#explore-groups tbody tr")
    assert [r.find_element("css selector", "th").text for r in rows] == [
        "host=a", "host=b", "host=c"]
    console.screenshot("explore-group-by")
    assert console.errors() == []


def test_fetchFormShowsResult(browser: Any, daemon: Daemon, liveNode: str,
                              console: Console) -> None:
    """The fetch form starts a fetch of a loopback node and shows the job done, the node ok with the samples of its page, as GET /fetch/{job} reports."""
    console.open(daemon, "#/fetch")
    console.find("#fetch-nodes").send_keys(liveNode)
    url = console.find("#fetch-url")
    url.clear()
    url.send_keys("/metrics")
    console.find("#fetch-form button[type=submit]").click()
    console.waitFor(lambda: console.find("#fetch-state").text == "done",
                    "the fetch job done")
    job = console.find("#fetch-job").text
    row = console.find("#fetch-table tbody tr")
    assert row.get_attribute("data-node") == liveNode
    assert row.get_attribute("data-state") == "ok"
    report = daemon.get(f"/fetch/{job}").json()
    assert report["nodes"][liveNode] == {"state": "ok", "samples": 2}
    assert row.find_element("css selector", ".num").text == "2"
    assert f"job={job}" in browser.current_url
    console.screenshot("fetch")
    assert console.errors() == []


def test_wrongTokenShowsMessage(browser: Any, authDaemon: Daemon,
                                console: Console) -> None:
    """With tokens on, the page itself opens without one; a wrong token typed once shows the 401 message; the right one, kept for the tab's session, shows the targets and survives a reload."""
    console.open(authDaemon, "#/targets")
    alert = console.find("#alert")
    console.waitFor(lambda: alert.is_displayed(), "the message without token")
    assert "needs a token (401)" in alert.text
    token = console.find("#token")
    token.send_keys("not-the-token")
    console.find("#token-form button[type=submit]").click()
    console.waitFor(lambda: "refused the token" in alert.text,
                    "the message for a wrong token")
    assert "401" in alert.text and alert.is_displayed()
    console.screenshot("wrong-token")
    token.send_keys(READ_TOKEN)
    console.find("#token-form button[type=submit]").click()
    console.waitFor(lambda: not alert.is_displayed(), "the message gone")
    console.waitFor(lambda: console.find("#targets-meta").text,
                    "the targets read with the token")
    browser.refresh()
    console.waitFor(lambda: console.find("#targets-meta").text,
                    "the targets after a reload, with the kept token")
    assert not console.find("#alert").is_displayed()
    assert browser.execute_script(
        "return sessionStorage.getItem('meetr.token')") == READ_TOKEN

    def expected401(entry: dict[str, Any]) -> bool:
        # Chromium logs each 401 answer as a failed resource: those of the
        # API calls made without and with the wrong token are expected.
        return entry.get("source") == "network" and \
            "status of 401" in entry["message"] and \
            authDaemon.base in entry["message"]

    assert console.errors(expected401) == []
    assert len(console.browserLog()) >= 2


def test_metricNamesLive(daemon: Daemon, authDaemon: Daemon) -> None:
    """GET /1.0/metric_names on a live daemon answers written metric names by prefix, a bad limit with a 400 naming it, and needs the read role with tokens on."""
    nowMs = int(time.time() * 1000)
    _writePoints(daemon, [{"metric_id": name, "ts": nowMs, "value": 1}
                          for name in ("names.alpha", "names.beta",
                                       "other.gamma")])
    reply = daemon.get("/1.0/metric_names", prefix="names.")
    assert reply.status == 200
    assert reply.json() == {"prefix": "names.", "truncated": False,
                            "metrics": ["names.alpha", "names.beta"]}
    assert daemon.get("/1.0/metric_names", prefix="names.", limit="1").json()[
        "truncated"] is True
    bad = daemon.get("/1.0/metric_names", limit="0")
    assert bad.status == 400 and bad.json()["field"] == "limit"
    assert authDaemon.get("/1.0/metric_names").status == 401
    assert http("GET", authDaemon.base + "/1.0/metric_names", headers={
        "Authorization": f"Bearer {READ_TOKEN}"}).status == 200
