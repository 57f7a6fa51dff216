"""Re-take docs/app.png: python scripts/app_picture.py [--out docs/app.png]

The picture in docs/app.md is the app comparing a 300-step run with a 20-step run on a drawn 7. This trains
both runs (about a minute on a CPU; they stay in logs/train/runs/, named *_picture-300steps and
*_picture-20steps), serves the app on them with checkpoint paths relative to the checkout, draws the 7 on the
sketchpad in headless Chromium (Debian's chromium and chromium-driver, driven by selenium from the test extra)
and saves the whole page once both columns have redrawn. Run it from the checkout's root after the app changes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

# The two runs: a 300-step run of experiment=tuned knows a 7; 20 steps of the tutorial's settings barely learn.
RUNS = {
    "picture-300steps": ["experiment=tuned", "++trainer.max_steps=300"],
    "picture-20steps": ["++trainer.max_steps=20"],
}
WIDTH = 1400  # the page's width in pixels: both checkpoint columns side by side
# A 7 as one stroke, in pixels from the sketchpad's centre: the top bar left to right, then down to the left.
SEVEN = [(-75 + x, -85) for x in range(0, 151, 10)] + [(75 - 6 * k, -85 + 17 * k) for k in range(1, 11)]


def train(name: str, overrides: list[str]) -> str:
    """Train one tiny run; its last.ckpt, relative to the checkout."""
    command = [sys.executable, "src/train.py", f"run_name={name}", "trainer.max_epochs=1", *overrides]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return str(max(Path("logs/train/runs").glob(f"*_{name}/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime))


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WIDTH},1200"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def wait_until_served(url: str, seconds: int = 240) -> None:
    for _ in range(seconds):
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"error: the app did not answer at {url} within {seconds} s")


def draw_and_save(url: str, out: Path) -> None:
    browser = chromium()
    try:
        browser.get(url)
        statuses = lambda: [browser.find_element(By.ID, f"status-{side}").text for side in "ab"]  # noqa: E731
        WebDriverWait(browser, 120).until(lambda _: all("predicted" in status for status in statuses()))
        canvas = browser.find_element(By.CSS_SELECTOR, "#drawing canvas")
        stroke = ActionChains(browser, duration=20).move_to_element_with_offset(canvas, *SEVEN[0]).click_and_hold()
        for x, y in SEVEN[1:]:
            stroke.move_to_element_with_offset(canvas, x, y)
        stroke.release().perform()
        WebDriverWait(browser, 60).until(lambda _: all("your drawing" in status for status in statuses()))
        time.sleep(3)  # the redrawn pictures load after the prediction shows
        frame, page = browser.execute_script(
            "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight]"
        )
        browser.set_window_size(WIDTH, frame + page)  # the whole page, without a scroll bar
        time.sleep(1)
        browser.save_screenshot(str(out))
        print("\n".join(statuses()), f"\n→ {out}")
    finally:
        browser.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/app.png"), help="where to save the picture")
    parser.add_argument("--port", type=int, default=7861, help="the app's port while the picture is taken")
    args = parser.parse_args()
    first, second = (train(name, overrides) for name, overrides in RUNS.items())
    app = subprocess.Popen(
        [sys.executable, "src/app.py", f"ckpt_path={first}", f"compare_ckpt_path={second}", f"app.port={args.port}"],
        stdout=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{args.port}/"
        wait_until_served(url)
        draw_and_save(url, args.out)
    finally:
        app.terminate()
        app.wait(30)


if __name__ == "__main__":
    main()
