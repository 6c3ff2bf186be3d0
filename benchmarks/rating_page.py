"""Rating page benchmark (issue 31): one person rating 300 images by keyboard in a real browser.

Serves Airflow's API server with our plugin (uvicorn on 127.0.0.1, a logged-in user of the simple auth manager) on
an embedded PostgreSQL and a local object store holding 300 images of mixed sizes — JPEGs of 800×1200, PNGs of
1600×1600 and 4000×3000 PNGs — in one rating set; drives Debian's chromium (headless, 1280×900) through selenium,
presses a rating key for every image and reads, from the page, the time from the key press to the next image
painted (two animation frames after it is in place and decoded). First with the page's prefetch (the next three
images loaded and decoded ahead, the rating sent in the background), then, in the same run, without it
(``?prefetch=0``: wait for the rating to be stored, ask for the next image, load it) by a second rater.

    .venv/bin/python benchmarks/rating_page.py [--images 300]

Target (issue 31): p95 ≤ 100 ms with prefetch on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _airflow_environment(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "plugins"))
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "ana:admin,bob:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API_AUTH__JWT_SECRET": "pony-bench-secret-0123456789abcdef0123456789abcdef0123456789abcdef",
    })  # fmt: skip
    (home / "passwords.json").write_text('{"ana": "ana-password", "bob": "bob-password"}')
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)


def _images(count: int):
    """(sha256, bytes, width, height, format) of ``count`` images: 2/3 JPEG 800×1200, the rest PNG 1600×1600, and
    one in 15 a 4000×3000 PNG."""
    import hashlib

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for index in range(count):
        if index % 15 == 0:
            size, fmt = (4000, 3000), "PNG"
        elif index % 3 == 0:
            size, fmt = (1600, 1600), "PNG"
        else:
            size, fmt = (800, 1200), "JPEG"
        small = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)  # smooth colour fields, like drawn art
        image = Image.fromarray(small).resize(size, Image.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 3}))
        data = buffer.getvalue()
        yield hashlib.sha256(data).hexdigest(), data, size[0], size[1], fmt


def _plant(settings, count: int) -> int:
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store

    store = open_store(settings=settings)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO normalize_run (as_of, parameters, status) VALUES (now(), '{}', 'complete') "
                    "RETURNING run_id")  # fmt: skip
        cur.execute("INSERT INTO rating_set (normalize_run_id, parameters, size) VALUES (%s, '{}', %s) "
                    "RETURNING set_id", (cur.fetchone()[0], count))  # fmt: skip
        set_id = cur.fetchone()[0]
        for index, (sha, data, width, height, fmt) in enumerate(_images(count)):
            key = f"images/{sha[:2]}/{sha[2:4]}/{sha}.{'png' if fmt == 'PNG' else 'jpg'}"
            store.put_bytes(key, data)
            cur.execute("INSERT INTO booru_post (site, post_id, rating, tags) VALUES ('e621', %s, 'general', %s)",
                        (index + 1, ["solo", f"tag_{index}"]))  # fmt: skip
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, %s, %s, %s, %s, %s)", (sha, key, len(data), width, height, fmt))  # fmt: skip
            cur.execute("INSERT INTO booru_post_image (site, post_id, sha256) VALUES ('e621', %s, %s)",
                        (index + 1, sha))
            cur.execute("INSERT INTO rating_set_item (set_id, position, sha256, site, post_id, stratum) "
                        "VALUES (%s, %s, %s, 'e621', %s, 's')", (set_id, index, sha, index + 1))  # fmt: skip
    return set_id


def _serve() -> tuple[str, object]:
    import requests
    import uvicorn
    from airflow.api_fastapi.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            requests.get(base + "/api/v2/monitor/health", timeout=10)
            return base, server
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _rate_all(base: str, user: str, count: int, prefetch: bool) -> list[float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    flags = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        wait = WebDriverWait(browser, 60)
        browser.get(base + "/pony/rate")
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
        browser.find_element(By.CSS_SELECTOR, "input[name=username], input[type=text]").send_keys(user)
        browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys(f"{user}-password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: b.get_cookie("_token") is not None)
        browser.get(base + "/pony/rate" + ("" if prefetch else "?prefetch=0"))
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        time.sleep(1.0)  # the first images loaded ahead, as a person would look at the first image a moment
        keys = ActionChains(browser)
        for number in range(1, count + 1):
            keys.send_keys("12345"[number % 5]).perform()
            wait.until(lambda b, n=number: int(b.find_element(By.TAG_NAME, "body").get_attribute("data-shown")
                                               or 0) >= n)
            if browser.find_element(By.ID, "done").is_displayed():
                break
        return [float(t) for t in browser.execute_script("return window.ponyTimings")]
    finally:
        browser.quit()


def _quantiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pony-rating-bench-"))
    _airflow_environment(home / "airflow")
    from pony_tasks.config import get_settings, load_settings
    from pony_tasks.db import connect, upgrade
    from pony_tasks.db.embedded import throwaway_server

    with throwaway_server() as url:
        os.environ.update({"PONY_HOME": str(home / "pony"), "PONY_DATABASE_URL": url})
        get_settings.cache_clear()
        settings = load_settings()
        with connect(settings, check_schema=False) as conn:
            upgrade(conn)
        started = time.perf_counter()
        _plant(settings, args.images)
        print(f"{args.images} images stored in {time.perf_counter() - started:.0f} s "
              "(JPEG 800×1200, PNG 1600×1600, one in 15 a 4000×3000 PNG)")  # fmt: skip
        base, server = _serve()
        try:
            with_prefetch = _rate_all(base, "ana", args.images, prefetch=True)
            without = _rate_all(base, "bob", args.images, prefetch=False)
        finally:
            server.should_exit = True
    for label, values in (("with prefetch", with_prefetch), ("without prefetch", without)):
        p50, p95 = _quantiles(values)
        print(f"key press → next image painted, {label:<16}: p50 {p50:6.1f} ms, p95 {p95:6.1f} ms "
              f"over {len(values)} key presses")  # fmt: skip
    ratio = _quantiles(without)[1] / max(_quantiles(with_prefetch)[1], 1e-9)
    print(f"p95 without / with prefetch: {ratio:.1f}×  (target: p95 ≤ 100 ms with prefetch)")


if __name__ == "__main__":
    main()
