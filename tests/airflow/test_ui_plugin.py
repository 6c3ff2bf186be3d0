"""The rating tool and reports inside Airflow's own API server (uvicorn on 127.0.0.1, real JWT logins through the
simple auth manager): unauthenticated requests refused, ratings stored under the logged-in user, undo, reports."""

from __future__ import annotations

import io
import socket
import threading
import time

import pytest
import requests

from pony_tasks.config import get_settings
from pony_tasks.db import connect
from pony_tasks.storage import open_store


@pytest.fixture
def rating_data(migrated, monkeypatch):
    """Six stored images in posts of two sites, a rating set of them (order = position)."""
    from PIL import Image

    monkeypatch.setenv("PONY_HOME", str(migrated.resolved_home))
    monkeypatch.setenv("PONY_DATABASE_URL", migrated.database_url.get_secret_value())
    get_settings.cache_clear()
    store = open_store(settings=migrated)
    shas = [f"{i:064x}" for i in range(1, 7)]
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO normalize_run (as_of, parameters, status) VALUES (now(), '{}', 'complete') "
                    "RETURNING run_id")  # fmt: skip
        run_id = cur.fetchone()[0]
        cur.execute("INSERT INTO rating_set (normalize_run_id, parameters, size) VALUES (%s, '{}', 6) "
                    "RETURNING set_id", (run_id,))  # fmt: skip
        set_id = cur.fetchone()[0]
        for i, sha in enumerate(shas):
            buffer = io.BytesIO()
            Image.new("RGB", (64, 48), (40 * i, 20, 200)).save(buffer, "PNG")
            store.put_bytes(f"images/{sha}.png", buffer.getvalue())
            site = ("e621", "danbooru")[i % 2]
            cur.execute("INSERT INTO booru_post (site, post_id, rating, tags) VALUES (%s, %s, 'general', %s)",
                        (site, i + 1, ["smile", f"tag_{i}"]))  # fmt: skip
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, %s, 1, 64, 48, 'PNG')", (sha, f"images/{sha}.png"))  # fmt: skip
            cur.execute("INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)", (site, i + 1, sha))
            cur.execute("INSERT INTO rating_set_item (set_id, position, sha256, site, post_id, stratum) "
                        "VALUES (%s, %s, %s, %s, %s, 's')", (set_id, i, sha, site, i + 1))  # fmt: skip
    yield set_id, shas
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def api_server(airflow_db):
    """Airflow's API server app (with our plugin mounted at /pony) served by uvicorn on a free loopback port."""
    import uvicorn
    from airflow.api_fastapi.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            requests.get(base + "/api/v2/monitor/health", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    yield base
    server.should_exit = True
    thread.join(timeout=10)


def login(base: str, user: str) -> requests.Session:
    answer = requests.post(base + "/auth/token", json={"username": user, "password": f"{user}-password"}, timeout=10)
    answer.raise_for_status()
    session = requests.Session()
    session.cookies.set("_token", answer.json()["access_token"])
    return session


def test_unauthenticated_requests_are_refused(api_server, rating_data) -> None:
    set_id, shas = rating_data
    for path in (f"/pony/api/next?set_id={set_id}", f"/pony/api/image/{shas[0]}", "/pony/api/report/bands.png"):
        assert requests.get(api_server + path, timeout=10).status_code == 401, path
    assert requests.post(api_server + "/pony/api/rate", json={"sha256": shas[0], "rating": 5},
                         timeout=10).status_code == 401  # fmt: skip
    forged = requests.Session()
    forged.cookies.set("_token", "not-a-jwt")
    assert forged.get(api_server + f"/pony/api/next?set_id={set_id}", timeout=10).status_code == 401
    page = requests.get(api_server + "/pony/rate", allow_redirects=False, timeout=10)
    assert page.status_code == 302 and "login" in page.headers["location"]
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM human_rating")
        assert cur.fetchone()[0] == 0


def test_ratings_are_stored_under_the_logged_in_user_with_undo(api_server, rating_data) -> None:
    set_id, shas = rating_data
    ana, bob = login(api_server, "ana"), login(api_server, "bob")
    assert ana.get(api_server + "/pony/api/me", timeout=10).json() == {"name": "ana"}
    assert "Rate images" in ana.get(api_server + "/pony/rate", timeout=10).text
    shown = []
    for value in (5, 4, 3):
        nxt = ana.get(api_server + f"/pony/api/next?set_id={set_id}", timeout=10).json()
        shown.append(nxt["sha256"])
        image = ana.get(api_server + f"/pony/api/image/{nxt['sha256']}", timeout=10)
        assert image.headers["content-type"] == "image/png" and image.content[:4] == b"\x89PNG"
        assert ana.post(api_server + "/pony/api/rate", json={"sha256": nxt["sha256"], "rating": value},
                        timeout=10).json()["rater"] == "ana"  # fmt: skip
    assert shown == shas[:3]  # the stratified order of the set
    assert ana.post(api_server + "/pony/api/undo", timeout=10).json() == {"sha256": shas[2]}
    again = ana.get(api_server + f"/pony/api/next?set_id={set_id}&exclude={shas[3]}", timeout=10).json()
    assert again["sha256"] == shas[2] and again["rated_by_rater"] == 2
    # bob's view is his own: nothing rated yet, the first image first
    assert bob.get(api_server + f"/pony/api/next?set_id={set_id}", timeout=10).json()["sha256"] == shas[0]
    assert bob.post(api_server + "/pony/api/rate", json={"sha256": shas[0], "rating": 9}, timeout=10).status_code == 422
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, rating, rater, source FROM human_rating ORDER BY rating_id")
        assert cur.fetchall() == [(shas[0], 5, "ana", "airflow-ui"), (shas[1], 4, "ana", "airflow-ui")]


def test_reports_render_their_plots(api_server, rating_data) -> None:
    ana = login(api_server, "ana")
    assert "Pony Pipeline reports" in ana.get(api_server + "/pony/reports", timeout=10).text
    for name in ("normalization", "aesthetic", "bands", "finetune"):
        answer = ana.get(api_server + f"/pony/api/report/{name}.png", timeout=60)
        assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n", name
    assert ana.get(api_server + "/pony/api/report/quality", timeout=10).json() == []


def test_a_person_logs_in_and_rates_with_the_keyboard_in_a_real_browser(api_server, rating_data) -> None:
    """Debian's chromium (headless) driven by selenium: log in through Airflow's login form, rate five images with
    keys 1–5, undo one with u, and find exactly the right ratings stored under the logged-in user."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    set_id, shas = rating_data
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(api_server + "/pony/rate")  # not logged in: Airflow's login page
        wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
        browser.find_element(By.CSS_SELECTOR, "input[name=username], input[type=text]").send_keys("ana")
        browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("ana-password")
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: b.get_cookie("_token") is not None)
        browser.get(api_server + "/pony/rate")
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        body = browser.find_element(By.TAG_NAME, "body")
        assert browser.find_element(By.ID, "rater").text == "ana"
        assert not browser.find_element(By.ID, "meta").is_displayed()  # site and tags hidden by default
        for count, key in enumerate("53412", start=1):
            before = browser.find_element(By.ID, "image").get_attribute("data-sha")
            body.send_keys(key)
            wait.until(lambda b, c=count: b.find_element(By.ID, "count").text.startswith(f"{c} /"))
            assert browser.find_element(By.ID, "image").get_attribute("data-sha") != before
        body.send_keys("u")
        wait.until(lambda b: b.find_element(By.ID, "count").text.startswith("4 /"))
        assert browser.find_element(By.ID, "image").get_attribute("data-sha") == shas[4]  # the undone one again
        browser.get(api_server + "/pony/reports")
        wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        wait.until(lambda b: all(b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                                 for i in b.find_elements(By.TAG_NAME, "img")))  # fmt: skip
        assert len(browser.find_elements(By.TAG_NAME, "img")) == 4
    finally:
        browser.quit()
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, rating, rater FROM human_rating ORDER BY rating_id")
        assert cur.fetchall() == [(shas[0], 5, "ana"), (shas[1], 3, "ana"), (shas[2], 4, "ana"), (shas[3], 1, "ana")]
