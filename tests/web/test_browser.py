"""The dashboard as a person uses it: Debian's Chromium (driven by selenium through the system
chromedriver; nothing is downloaded) loads the page over a real SQLite queue while a real
worker runs, sees the counts move as jobs complete, signs in, clicks retry on a dead letter and
sees the job run; a tenant named ``<script>alert(1)</script>`` shows as text. The screenshots
are kept in ``test-artifacts/`` (``QUICK_QUEUE_ARTIFACTS`` overrides the folder)."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from pydantic import BaseModel

import quick_queue as qq

pytest.importorskip("selenium", reason="browser test: needs selenium (pip install -e .[web-test])")
pytest.importorskip("uvicorn", reason="browser test: needs the web extra (pip install -e .[web])")

import uvicorn
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from quick_queue.web import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token"
XSS = "<script>alert(1)</script>"
SOUR = "</textarea><script>alert(3)</script>"  # a payload that must show as text in the editor
ALLOW = threading.Event()  # the flaky job fails until the test lets it succeed
GATE = threading.Semaphore(0)  # each brew waits for the test to let one through
POURED: list[str] = []  # the milk each pour that succeeded was made with
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="browser test: needs Debian's chromium and chromium-driver "
                       "(apt-get install -y chromium chromium-driver)"),
]


@qq.job(topic="brew")
class Brew:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        GATE.acquire(timeout=30)  # the test lets jobs finish a few at a time


@qq.job(topic="flaky", max_retries=0)
class Flaky:
    def perform(self, payload: Any, meta: qq.JobMeta) -> None:
        if not ALLOW.is_set():
            raise RuntimeError("the grinder is jammed")


@qq.job(topic="pour", max_retries=0)
class Pour:
    class Payload(BaseModel):
        milk: str

    def perform(self, payload: Pour.Payload, meta: qq.JobMeta) -> None:
        if payload.milk != "oat":
            raise RuntimeError(f"out of {payload.milk}")
        POURED.append(payload.milk)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def artifacts() -> Path:
    root = Path(__file__).resolve().parents[2]
    folder = Path(os.environ.get("QUICK_QUEUE_ARTIFACTS", root / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path}/shop.db"
    db = qq.open(url)
    queue = qq.JobQueue(db, jobs=[Brew, Flaky, Pour])
    port = _free_port()
    config = uvicorn.Config(create_app(queue, token=TOKEN, refresh=0.3), host="127.0.0.1",
                            port=port, log_level="warning")
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, daemon=True)
    thread.start()
    WebDriverWait(None, 10, poll_frequency=0.02).until(lambda _: web.started)
    yield f"http://127.0.0.1:{port}/", url
    web.should_exit = True
    thread.join(10)
    db.close()


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium must never fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _card(driver: Any, name: str) -> int:
    """The number on a card (-1 before the page drew it). Read in one script call: the page
    redraws every poll, so an element found a moment ago may be gone."""
    text = driver.execute_script(
        "const n = document.querySelector(arguments[0]); return n ? n.textContent : '';",
        f"#count-{name} .n")
    return int(text) if str(text).isdigit() else -1


def _polls(driver: Any) -> int:
    """How many times the page has redrawn itself from the API."""
    return int(driver.execute_script("return Number(document.body.dataset.polls || 0);"))


def _cells(driver: Any, css: str) -> list[str]:
    return list(driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), n => n.textContent);", css))


def _click(driver: Any, css: str, job_id: str, attribute: str = "data-job-id") -> bool:
    """Click the enabled button ``css`` of the row of ``job_id`` (False: not there yet, or
    redrawn under us: the wait tries again)."""
    for button in driver.find_elements(By.CSS_SELECTOR, css):
        try:
            if button.get_attribute(attribute) == job_id and button.is_enabled():
                button.click()
                return True
        except StaleElementReferenceException:
            return False
    return False


def _shows_error(text: str) -> Callable[[Any], bool]:
    """A wait condition: the editor says ``text`` (why it refused the payload)."""
    return lambda driver: text in str(driver.find_element(By.ID, "dead-edit-error").text)


def _edit_and_retry(driver: Any, wait: WebDriverWait[Any], job_id: str, shot: Path) -> None:
    """Open the dead letter's payload in the editor (shown as text), send one the handler's
    model refuses (the reason shows, nothing changes), then the fixed one; ``shot``: the
    screenshot of the editor with a refusal."""
    wait.until(lambda d: _click(d, "button.edit", job_id))
    box = driver.find_element(By.ID, "dead-edit-payload")
    wait.until(lambda _: box.is_displayed())
    assert json.loads(box.get_attribute("value")) == {"milk": SOUR}
    for text, error in (('{"mlk": "oat"}', "milk"), ("[1]", "JSON object"), ("{", "not JSON")):
        box.clear()
        box.send_keys(text)
        driver.find_element(By.ID, "dead-edit-retry").click()
        wait.until(_shows_error(error))
        if error == "milk":
            driver.save_screenshot(str(shot))
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert.text
    box.clear()
    box.send_keys('{"milk": "oat"}')
    driver.find_element(By.ID, "dead-edit-retry").click()
    wait.until(lambda d: any("edited payload" in t for t in _cells(d, "#status")))
    assert not box.is_displayed()


def _pause_and_resume(driver: Any, wait: WebDriverWait[Any], queue: qq.JobQueue,
                      shot: Path) -> None:
    """Pause a misspelt topic (refused: the reason stays on screen through later polls), then
    a tenant with a hostile name from the overview's form (it shows as text in the paused
    panel), then resume it with its button."""
    Select(driver.find_element(By.ID, "pause-kind")).select_by_value("topic")
    driver.find_element(By.ID, "pause-name").send_keys("brwe")
    driver.find_element(By.ID, "pause-button").click()
    wait.until(lambda d: any("unknown topic 'brwe'" in t for t in _cells(d, "#status")))
    polled = _polls(driver)
    wait.until(lambda d: _polls(d) >= polled + 2)  # two redraws later, the reason is still there
    assert any("pause failed: unknown topic 'brwe'" in t for t in _cells(driver, "#status"))
    assert queue.paused() == {"tenant": [], "topic": []}
    Select(driver.find_element(By.ID, "pause-kind")).select_by_value("tenant")
    driver.find_element(By.ID, "pause-name").send_keys(XSS)
    driver.find_element(By.ID, "pause-button").click()
    wait.until(lambda d: XSS in _cells(d, "#paused td"))
    assert queue.paused() == {"tenant": [XSS], "topic": []}
    driver.save_screenshot(str(shot))
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert.text
    wait.until(lambda d: _click(d, "button.resume", XSS, "data-name"))
    wait.until(lambda d: any("resumed" in t for t in _cells(d, "#status")))
    assert queue.paused() == {"tenant": [], "topic": []}


def test_the_dashboard_over_a_running_worker(server: tuple[str, str], browser: Any,
                                             artifacts: Path) -> None:
    page, url = server
    (artifacts / "dashboard-failure.png").unlink(missing_ok=True)
    db = qq.open(url)
    worker = qq.JobQueue(db, jobs=[Brew, Flaky, Pour])
    dead_id = worker.enqueue("corner-shop", "flaky", {"cup": "espresso"})
    pour_id = worker.enqueue("corner-shop", "pour", {"milk": SOUR})
    worker.drain(timeout=10)  # each fails once: two dead letters
    for n in range(24):
        worker.enqueue(f"shop-{n % 6}", "brew", {"cup": n})
    worker.enqueue(XSS, "brew", {"cup": "<img src=x onerror=alert(2)>"}, in_=3600)
    wait = WebDriverWait(browser, 30, poll_frequency=0.1)

    browser.get(page + "#/overview")
    wait.until(lambda d: _card(d, "ready") == 24)
    assert _card(browser, "dead") == 2
    run = threading.Thread(target=worker.run, kwargs={"concurrency": 2, "log": False},
                           daemon=True)
    run.start()
    try:
        wait.until(lambda d: _card(d, "workers") == 1)
        for _ in range(6):
            GATE.release()
        wait.until(lambda d: 0 < _card(d, "ready") < 24)  # jobs complete while we watch
        wait.until(lambda d: _card(d, "completed") >= 6)
        for _ in range(30):
            GATE.release()
        wait.until(lambda d: _card(d, "ready") == 0 and _card(d, "leased") == 0)
        browser.save_screenshot(str(artifacts / "dashboard-overview.png"))

        browser.get(page + "#/tenants")
        # the tenant's name shows as text, and no script of it ran
        wait.until(lambda d: XSS in _cells(d, "#tenants td"))
        browser.get(page + "#/zone?tenant=" + quote(XSS, safe=""))  # its zone's page too
        wait.until(lambda d: _cells(d, "#zone-name") == [XSS]
                   and "scheduled" in _cells(d, "#zone-jobs td"))
        with pytest.raises(NoAlertPresentException):
            _ = browser.switch_to.alert.text

        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        wait.until(lambda d: d.execute_script(
            "const n = document.getElementById('logout'); return !!n && n.hidden === false;"))
        browser.get(page + "#/dead")
        wait.until(lambda d: dead_id in _cells(d, "#dead td a"))
        browser.save_screenshot(str(artifacts / "dashboard-dead-letters.png"))
        ALLOW.set()
        wait.until(lambda d: _click(d, "button.retry", dead_id))
        wait.until(lambda d: any("retrying" in t for t in _cells(d, "#status")))
        wait.until(lambda _: worker.get_job("corner-shop", dead_id) is None)  # it ran
        _edit_and_retry(browser, wait, pour_id, artifacts / "dashboard-dead-edit.png")
        wait.until(lambda _: worker.get_job("corner-shop", pour_id) is None)  # it ran
        assert POURED == ["oat"]
        browser.get(page + "#/overview")
        wait.until(lambda d: _card(d, "dead") == 0)
        browser.save_screenshot(str(artifacts / "dashboard.png"))
        _pause_and_resume(browser, wait, worker, artifacts / "dashboard-paused.png")
    except Exception:
        browser.save_screenshot(str(artifacts / "dashboard-failure.png"))
        raise
    finally:
        worker.stop()
        run.join(15)
        ALLOW.clear()
        POURED.clear()
        for _ in range(30):
            GATE.release()
        db.close()
    assert (artifacts / "dashboard.png").stat().st_size > 10_000
