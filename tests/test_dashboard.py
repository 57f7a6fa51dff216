"""`make dashboard`: optuna-dashboard on the newest search's study, served on 127.0.0.1 only, seen in Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from browser import chromium, needs_chromium
from conftest import PROJECT_ROOT
from test_sweep_report import make_search

pytestmark = pytest.mark.slow
pytest.importorskip("optuna_dashboard", reason="the sweep extra is not installed: pip install -e '.[sweep]'")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def other_local_addresses() -> list[str]:
    """Addresses of this machine that are not 127.0.0.1: another loopback one, and the outward one if any."""
    addresses = {"127.0.0.2"}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # UDP: picks the outward interface, sends nothing
            addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    return sorted(addresses - {"127.0.0.1"})


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@needs_chromium
def test_the_dashboard_serves_the_newest_search_on_loopback_only_and_shows_its_trials(tmp_path):
    multiruns = tmp_path / "multiruns"
    make_search(multiruns / "older", name="older_search")
    study = make_search(multiruns / "newer", name="newer_search")
    os.utime(multiruns / "older" / "optuna.db", (time.time() - 3600,) * 2)
    (multiruns / "grid").mkdir()  # a grid's folder has no study: not a candidate
    port = free_port()
    console = tmp_path / "console.txt"
    with console.open("w") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_ROOT / "scripts" / "dashboard.py"),
                "--multiruns",
                str(multiruns),
                "--port",
                str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
        )
    try:
        deadline = time.monotonic() + 120
        while not answers(f"http://127.0.0.1:{port}/dashboard"):
            assert server.poll() is None and time.monotonic() < deadline, console.read_text()
            time.sleep(0.5)
        assert f"optuna-dashboard for sqlite:///{multiruns / 'newer' / 'optuna.db'}" in console.read_text()
        for address in other_local_addresses():
            assert not answers(f"http://{address}:{port}/dashboard"), f"the dashboard answered on {address}"
        page_shows_the_trials(f"http://127.0.0.1:{port}", study)
    finally:
        server.terminate()
        server.wait(timeout=20)


def page_shows_the_trials(url: str, study) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(f"{url}/dashboard/studies/1/trials")
        text = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        WebDriverWait(browser, 90).until(lambda _: f"Trial {len(study.trials) - 1}" in text())
        shown = text()
        assert study.study_name in shown and f"{len(study.trials)} Trials" in shown
        assert shown.count("Complete") >= 5 and "Pruned" in shown and "Fail" in shown
        assert all(f"Trial {trial.number}" in shown for trial in study.trials)
    finally:
        browser.quit()
