"""The rating tool and reports inside Airflow's own API server (uvicorn on 127.0.0.1, real JWT logins through the
simple auth manager): unauthenticated requests refused, ratings stored under the logged-in user, undo, reports."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg2.extras
import pytest
import requests

from pony_tasks.config import get_settings
from pony_tasks.db import connect
from pony_tasks.storage import open_store


@pytest.fixture
def rating_data(migrated, monkeypatch, request):
    """Six stored images (128×96, tiny as many booru thumbnails are) in posts of two sites, and a rating set of them
    (order = position) unless the test is marked ``no_rating_set``."""
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
            Image.new("RGB", (128, 96), (40 * i, 20, 200)).save(buffer, "PNG")
            store.put_bytes(f"images/{sha}.png", buffer.getvalue())
            site = ("e621", "danbooru")[i % 2]
            cur.execute("INSERT INTO booru_post (site, post_id, rating, tags) VALUES (%s, %s, 'general', %s)",
                        (site, i + 1, ["smile", f"tag_{i}"]))  # fmt: skip
            cur.execute("INSERT INTO image (sha256, storage_key, byte_size, width, height, format) "
                        "VALUES (%s, %s, 1, 128, 96, 'PNG')", (sha, f"images/{sha}.png"))  # fmt: skip
            cur.execute("INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)", (site, i + 1, sha))
            cur.execute("INSERT INTO rating_set_item (set_id, position, sha256, site, post_id, stratum) "
                        "VALUES (%s, %s, %s, %s, %s, 's')", (set_id, i, sha, site, i + 1))  # fmt: skip
        if request.node.get_closest_marker("no_rating_set"):
            cur.execute("DELETE FROM rating_set_item; DELETE FROM rating_set")
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
    deadline = time.monotonic() + 120  # the first answer may take long on a loaded machine (lazy app start-up)
    while True:
        try:
            requests.get(base + "/api/v2/monitor/health", timeout=10)
            break
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise
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
    assert requests.get(api_server + "/pony/api/works", timeout=10).status_code == 401
    assert requests.post(api_server + "/pony/api/works/split", json={"sha256": shas[1], "reason": "not it"},
                         timeout=10).status_code == 401  # fmt: skip
    for page in ("/pony/rate", "/pony/reports", "/pony/works", "/pony/quality-docs/index.html"):
        answer = requests.get(api_server + page, allow_redirects=False, timeout=10)
        assert answer.status_code == 302 and "login" in answer.headers["location"], page
    for hidden in ("/pony/docs", "/pony/openapi.json", "/pony/redoc"):  # the API's shape is not for visitors
        assert requests.get(api_server + hidden, timeout=10).status_code in (401, 404), hidden
        assert login(api_server, "ana").get(api_server + hidden, timeout=10).status_code == 404, hidden
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM human_rating")
        assert cur.fetchone()[0] == 0


def test_ratings_are_stored_under_the_logged_in_user_with_undo(api_server, rating_data) -> None:
    set_id, shas = rating_data
    ana, bob = login(api_server, "ana"), login(api_server, "bob")
    assert ana.get(api_server + "/pony/api/me", timeout=10).json() == {"name": "ana", "shared": False}
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


def test_the_entry_points_lead_to_the_rating_page(api_server, rating_data) -> None:
    ana = login(api_server, "ana")
    for entry in ("/pony", "/pony/"):
        answer = ana.get(api_server + entry, timeout=10)
        assert answer.status_code == 200 and "Rate images" in answer.text, entry


def test_data_docs_are_served_behind_the_login(api_server, rating_data) -> None:
    from pony_tasks.quality.checks import run_check

    report = run_check("images", settings=get_settings(), since=datetime(2000, 1, 1, tzinfo=UTC))
    ana = login(api_server, "ana")
    quality = ana.get(api_server + "/pony/api/report/quality", timeout=10).json()
    assert quality[0]["outcome"] == "passed" and report.docs_path.endswith(quality[0]["docs"])
    page = ana.get(api_server + "/pony/quality-docs/" + quality[0]["docs"], timeout=10)
    assert page.status_code == 200 and "Expectation Validation Result" in page.text
    assert ana.get(api_server + "/pony/quality-docs/index.html", timeout=10).status_code == 200
    assert ana.get(api_server + "/pony/quality-docs/..%2F..%2F..%2Fgx.lock", timeout=10).status_code == 404
    Path(report.docs_path).unlink()  # as in a deployment whose checks ran in pods: the page is on the object store
    page = ana.get(api_server + "/pony/quality-docs/" + quality[0]["docs"], timeout=10)
    assert page.status_code == 200 and "Expectation Validation Result" in page.text


def test_reports_render_their_plots(api_server, rating_data) -> None:
    ana = login(api_server, "ana")
    assert "Pony Pipeline reports" in ana.get(api_server + "/pony/reports", timeout=10).text
    for name in ("normalization", "aesthetic", "bands", "finetune"):
        answer = ana.get(api_server + f"/pony/api/report/{name}.png", timeout=60)
        assert answer.status_code == 200 and answer.content[:8] == b"\x89PNG\r\n\x1a\n", name
    assert ana.get(api_server + "/pony/api/report/quality", timeout=10).json() == []


@pytest.fixture
def browser():
    """Debian's chromium (headless, a 1280×900 window) driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    flags = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900")
    for flag in flags:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _stored_ratings(rater: str) -> int:
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM human_rating WHERE rater = %s", (rater,))
        return cur.fetchone()[0]


def _log_in_through_airflows_form(browser, base: str, wait) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    browser.get(base + "/pony/rate")  # not logged in: Airflow's login page
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type=password]")))
    browser.find_element(By.CSS_SELECTOR, "input[name=username], input[type=text]").send_keys("ana")
    browser.find_element(By.CSS_SELECTOR, "input[type=password]").send_keys("ana-password")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda b: b.get_cookie("_token") is not None)


def test_a_person_logs_in_and_rates_with_the_keyboard_in_a_real_browser(api_server, rating_data, browser) -> None:
    """Log in through Airflow's login form, rate five images with keys 1–5 (no click first), undo one with u, rate
    once more inside Airflow's own UI (the page in its iframe), and find exactly the right ratings stored under the
    logged-in user."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    set_id, shas = rating_data
    wait = WebDriverWait(browser, 30)
    _log_in_through_airflows_form(browser, api_server, wait)
    browser.get(api_server + "/pony/rate")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "rater").text == "ana"
    assert not browser.find_element(By.ID, "anonymous").is_displayed()  # named users: no all-admins warning
    assert not browser.find_element(By.ID, "meta").is_displayed()  # site and tags hidden by default
    # The 128×96 image fills the space the page leaves, not its natural size, and its pixels stay sharp.
    wait.until(lambda b: b.find_element(By.ID, "image").get_attribute("data-scale"))
    image, stage = browser.find_element(By.ID, "image"), browser.find_element(By.ID, "stage")
    assert image.size["width"] >= 0.9 * stage.size["width"] or image.size["height"] >= 0.8 * stage.size["height"]
    assert image.size["width"] > 5 * 128 and abs(image.size["width"] / image.size["height"] - 128 / 96) < 0.02
    assert "pixelated" in image.get_attribute("class")
    assert browser.find_element(By.ID, "size").text.startswith("128×96 px, shown at")
    # Keys work at once: sent to whatever has the focus, with no click on the page first.
    keys = ActionChains(browser)
    for count, key in enumerate("53412", start=1):
        before = browser.find_element(By.ID, "image").get_attribute("data-sha")
        keys.send_keys(key).perform()
        wait.until(lambda b, c=count: b.find_element(By.ID, "count").text.startswith(f"{c} /"))
        # the count moves when the key is taken; the next image may still be decoding on a loaded machine
        wait.until(lambda b, sha=before: b.find_element(By.ID, "image").get_attribute("data-sha") != sha)
    keys.send_keys("u").perform()
    wait.until(lambda b: b.find_element(By.ID, "count").text.startswith("4 /"))
    assert browser.find_element(By.ID, "image").get_attribute("data-sha") == shas[4]  # the undone one again

    # Inside Airflow's UI (the "Rate images" menu entry shows the page in an iframe): keys work without a click too.
    browser.get(api_server + "/plugin/pony-rate")
    frame = wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "iframe[src*='/pony/rate']"))[0]
    browser.switch_to.frame(frame)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.switch_to.default_content()
    ActionChains(browser).send_keys("2").perform()
    browser.switch_to.frame(frame)
    wait.until(lambda b: b.find_element(By.ID, "count").text.startswith("5 /"))
    browser.switch_to.default_content()

    browser.get(api_server + "/pony/reports")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    wait.until(lambda b: all(b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                             for i in b.find_elements(By.TAG_NAME, "img")))  # fmt: skip
    assert len(browser.find_elements(By.TAG_NAME, "img")) == 4
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, rating, rater FROM human_rating ORDER BY rating_id")
        assert cur.fetchall() == [(shas[0], 5, "ana"), (shas[1], 3, "ana"), (shas[2], 4, "ana"), (shas[3], 1, "ana"),
                                  (shas[4], 2, "ana")]  # fmt: skip


@pytest.mark.no_rating_set
def test_without_a_rating_set_the_page_offers_to_create_one(api_server, rating_data, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    _log_in_through_airflows_form(browser, api_server, wait)
    browser.get(api_server + "/pony/rate")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "empty")
    assert browser.find_element(By.ID, "create").is_displayed()
    assert not browser.find_element(By.ID, "image").is_displayed()  # no broken image beside the message
    browser.find_element(By.CSS_SELECTOR, "#create button").click()
    # Nothing is normalised in this fixture: the page says so, and no empty set is left behind.
    wait.until(lambda b: "normalised score" in b.find_element(By.ID, "create-status").text)
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM rating_set")
        assert cur.fetchone()[0] == 0


def test_an_operator_reviews_works_and_splits_one_in_a_real_browser(api_server, rating_data, browser) -> None:
    """The works page shows a merged work (canonical image first, evidence), a variant and a near miss; splitting
    an image out asks why and records the decision under the logged-in user; bad decisions are refused."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    _, shas = rating_data
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", (shas[0],))
        work_id = cur.fetchone()[0]
        for sha in shas[:2]:
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s)", (sha, work_id))
        for a, b, verdict, evidence in (
            (shas[0], shas[1], "duplicate", {"phash_bits": 2, "chroma_distance": 0.3, "found_by": ["phash"]}),
            (shas[2], shas[3], "variant", {"phash_bits": 4, "shared_artists": ["inkwell"],
                                           "reasons": ["colours differ (chroma 9.1 > 4.0)"]}),
            (shas[4], shas[5], "distinct", {"phash_bits": 6, "reasons": ["part of the picture changed"]}),
        ):  # fmt: skip
            cur.execute("INSERT INTO work_pair (sha_a, sha_b, verdict, decided_by, evidence) "
                        "VALUES (%s, %s, %s, 'matcher', %s)", (a, b, verdict, json.dumps(evidence)))  # fmt: skip
    ana = login(api_server, "ana")
    review = ana.get(api_server + "/pony/api/works", timeout=10).json()
    assert [m["sha256"] for m in review["merged"][0]["images"]] == shas[:2] and review["merged_works"] == 1
    assert [p["a"] for p in review["variants"]] == [shas[2]] and [p["a"] for p in review["near_misses"]] == [shas[4]]
    sheet = ana.get(api_server + "/pony/api/works/contact-sheet.png", timeout=30)
    assert sheet.content[:8] == b"\x89PNG\r\n\x1a\n"
    refused = ana.post(api_server + "/pony/api/works/pair", json={"a": shas[4], "b": shas[5], "verdict": "maybe",
                                                                  "reason": "looks alike"}, timeout=10)  # fmt: skip
    assert refused.status_code == 422
    assert ana.post(api_server + "/pony/api/works/split", json={"sha256": shas[5], "reason": "in no work"},
                    timeout=10).status_code == 404  # fmt: skip

    wait = WebDriverWait(browser, 30)
    _log_in_through_airflows_form(browser, api_server, wait)
    browser.get(api_server + "/pony/works")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    wait.until(lambda b: all(b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                             for i in b.find_elements(By.TAG_NAME, "img")))  # fmt: skip
    work = browser.find_element(By.CSS_SELECTOR, f"[data-work='{work_id}']")
    figures = work.find_elements(By.TAG_NAME, "figure")
    assert "canonical" in figures[0].get_attribute("class") and "danbooru 2" in figures[1].text
    assert "phash_bits 2" in work.text and "colours differ" in browser.find_element(By.ID, "variants").text
    # every evidence line names its pair, and every image is named by its posts (issue 27)
    assert "e621 1 ↔ danbooru 2: duplicate" in work.text
    variants = browser.find_element(By.ID, "variants")
    assert "e621 3 ↔ danbooru 4: variant" in variants.text
    assert [f.text for f in variants.find_elements(By.TAG_NAME, "figure")] == ["e621 3", "danbooru 4"]
    assert "e621 5 ↔ danbooru 6: distinct" in browser.find_element(By.ID, "misses").text
    figures[1].find_element(By.TAG_NAME, "button").click()
    prompt = wait.until(expected_conditions.alert_is_present())
    prompt.send_keys("a re-drawn version")
    prompt.accept()
    wait.until(lambda b: "recorded: distinct by ana" in b.find_element(By.ID, "status").text)
    with connect(get_settings()) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha_a, sha_b, verdict, decided_by, reason FROM work_pair WHERE decided_by = 'operator'")
        assert cur.fetchall() == [(shas[0], shas[1], "distinct", "operator", "a re-drawn version (ana)")]


def test_gate_outcomes_and_normal_empty_checks_show_on_the_reports_page(api_server, rating_data, browser) -> None:
    """Issue 27: a fine-tune its gates skipped says why where people look; an hourly scrape that found nothing reads
    as normal, a failed check as a failure."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with connect(get_settings()) as conn, conn.cursor() as cur:
        new = "works not in the last completed run (need 1000)"
        insert = "INSERT INTO finetune_gate (context, dataset, gate, passed, detail) VALUES %s"
        psycopg2.extras.execute_values(cur, insert, [
            ("asset_triggered__1", "ft-1", "dataset_quality", True, "captions check of set 2: 0 blocking"),
            ("asset_triggered__1", "ft-1", "new_images", False, f"0 {new}"),
            ("manual__2", "ft-2", "new_images", True, f"1200 {new}"),
            ("manual__2", "ft-2", "human_approval", True, "approval answer [Approve] by ana")])  # fmt: skip
        for suite, outcome in (("scraped_posts", "no_rows"), ("captions", "no_rows"), ("images", "failed")):
            cur.execute("""INSERT INTO dq_result (suite, batch, rows_checked, success, blocking_failures, warnings,
                               failed, result_key, outcome) VALUES (%s, '{}', 0, false, %s, 0, '[]', 'k', %s)""",
                        (suite, int(outcome == "failed"), outcome))  # fmt: skip
    ana = login(api_server, "ana")
    gates = ana.get(api_server + "/pony/api/report/finetune-gates", timeout=10).json()
    assert [g["context"] for g in gates] == ["manual__2", "asset_triggered__1"]
    assert gates[0]["outcome"] == "approved" and not gates[0]["skipped"]
    assert gates[1]["skipped"] and gates[1]["outcome"] == (
        "skipped — new_images: 0 works not in the last completed run (need 1000)")
    browser.get(api_server + "/pony/reports")
    browser.add_cookie({"name": "_token", "value": ana.cookies["_token"]})
    browser.get(api_server + "/pony/reports")
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    outcomes = {}
    for tr in browser.find_elements(By.CSS_SELECTOR, "#quality tr")[1:]:
        cells = tr.find_elements(By.TAG_NAME, "td")
        outcomes[cells[1].text] = (cells[3].text, cells[3].get_attribute("class"))
    assert outcomes["scraped_posts"] == ("nothing new (normal)", "quiet")
    assert outcomes["captions"] == ("no rows", "bad") and outcomes["images"] == ("failed", "bad")
    skipped = browser.find_element(By.CSS_SELECTOR, "#gates tr[data-skipped=true]").text
    assert "asset_triggered__1" in skipped and "need 1000" in skipped
    plan = browser.find_element(By.ID, "plan").text  # the first run's plan, read-only
    assert "gelbooru" in plan and "GPU hours" in plan and "assumptions:" in plan


def test_data_docs_render_fully_with_no_network(api_server, rating_data) -> None:
    """Issue 27: with every host but 127.0.0.1 unreachable, the Data Docs index is styled and its table of
    validations (built by bootstrap-table's script) lists the stored result, and pages load at once."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from pony_tasks.quality.checks import run_check
    from pony_tasks.quality.docs_assets import missing_assets

    assert not missing_assets(), "`pony quality docs-assets` (make's install step) fetched every asset"
    run_check("images", settings=get_settings(), since=datetime(2000, 1, 1, tzinfo=UTC))
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        ana = login(api_server, "ana")
        driver.get(api_server + "/pony/reports")
        driver.add_cookie({"name": "_token", "value": ana.cookies["_token"]})
        started = time.monotonic()
        driver.get(api_server + "/pony/quality-docs/index.html")
        WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")
        loaded = time.monotonic() - started
        table = WebDriverWait(driver, 20).until(
            lambda d: [row for row in d.find_elements(By.CSS_SELECTOR, "table tbody tr") if "images" in row.text])
        assert table, "the index lists the validation"
        assert driver.execute_script("return typeof jQuery === 'function' && typeof jQuery.fn.bootstrapTable === "
                                     "'function' && typeof vegaEmbed === 'function'")  # fmt: skip
        font = driver.execute_script("return getComputedStyle(document.body).fontFamily")
        assert "-apple-system" in font or "Segoe UI" in font, f"Bootstrap's styles apply ({font})"
        sources = driver.execute_script("return [...document.querySelectorAll('script[src], link[href]')]"
                                        ".map(e => e.src || e.href)")  # fmt: skip
        assert not [s for s in sources if s.startswith("http") and "127.0.0.1" not in s and "stylesheet" not in s
                    and ("cdn" in s or "unpkg" in s or "jquery.com" in s)], sources  # fmt: skip
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert loaded < 5, f"no page waits for a CDN to time out ({loaded:.1f} s)"
    finally:
        driver.quit()


def test_a_list_of_integers_is_entered_in_airflows_trigger_form(api_server, rating_data, browser) -> None:
    """Issue 27: aesthetic_train's rating_sets typed in Airflow's own trigger form (one per line, as the form asks)
    reaches the run, and check_params reads it as integers."""
    import importlib.util
    import subprocess
    import sys

    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from pony_airflow.params import coerce
    from tests.airflow.conftest import ROOT

    subprocess.run([sys.executable, "-m", "airflow", "dags", "reserialize"], check=True, capture_output=True,
                   cwd=ROOT, timeout=300)  # fmt: skip
    ana = login(api_server, "ana")
    headers = {"Authorization": f"Bearer {ana.cookies['_token']}"}
    browser.get(api_server + "/pony/reports")
    browser.add_cookie({"name": "_token", "value": ana.cookies["_token"]})
    browser.get(api_server + "/dags/aesthetic_train")
    # the React page re-renders while it loads: an element found a moment ago may be gone (stale) — look again
    wait = WebDriverWait(browser, 60, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda b: [e for e in b.find_elements(By.TAG_NAME, "button") if e.text.strip() == "Trigger"])[0].click()
    field = wait.until(lambda b: b.find_elements(By.ID, "element_rating_sets"))
    if not field[0].is_displayed():  # the parameters may sit in a collapsed section
        [e for e in browser.find_elements(By.TAG_NAME, "button") if "Parameters" in e.text][0].click()
    field[0].click()
    field[0].send_keys("1", Keys.ENTER, "3")
    submit = [e for e in browser.find_elements(By.CSS_SELECTOR, "button") if e.text.strip() == "Trigger"][-1]
    submit.click()

    def created() -> list[dict]:
        answer = requests.get(api_server + "/api/v2/dags/aesthetic_train/dagRuns", headers=headers, timeout=10)
        return answer.json().get("dag_runs", []) if answer.status_code == 200 else []

    runs = WebDriverWait(browser, 30).until(lambda _: created())
    conf = runs[-1]["conf"]
    assert conf["rating_sets"] == ["1", "3"], conf  # the form sends lines: the run reads them as integers
    spec = importlib.util.spec_from_file_location("aesthetic_train_dag", ROOT / "dags" / "aesthetic_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert coerce(conf, module.RULES)["rating_sets"] == [1, 3], "check_params hands the run integers"


def test_a_reload_in_the_middle_of_rating_loses_nothing_and_a_rating_sent_twice_is_stored_once(
    api_server, rating_data, browser
) -> None:
    """Keys pressed and the page reloaded at once (the ratings still on their way): every rating is stored, once,
    and the page resumes at the next image; the same rating posted twice with its key is stored once; the page
    loads the next images ahead and shows the pace toward the goal."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    set_id, shas = rating_data
    wait = WebDriverWait(browser, 30)
    _log_in_through_airflows_form(browser, api_server, wait)
    browser.get(api_server + "/pony/rate")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    wait.until(lambda b: b.execute_script("return performance.getEntriesByType('resource').filter("
                                          "e => e.name.includes('/pony/api/image/')).length") >= 4)  # fmt: skip
    wait.until(lambda b: "of 20,000 · 0 an hour" in b.find_element(By.ID, "pace").text)
    keys = ActionChains(browser)
    for key in "342":
        keys.send_keys(key).perform()
    browser.refresh()  # at once: the three ratings may still be on their way
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert browser.find_element(By.ID, "image").get_attribute("data-sha") == shas[3]  # resumed after the three
    assert browser.find_element(By.ID, "count").text.startswith("3 /")
    wait.until(lambda b: "3 of 20,000 · 3 an hour · about" in b.find_element(By.ID, "pace").text)
    ActionChains(browser).send_keys("5").perform()
    wait.until(lambda b: b.find_element(By.ID, "count").text.startswith("4 /"))
    deadline = time.monotonic() + 10  # the count moves when the key is taken; the rating is posted after it
    while _stored_ratings("ana") != 4 and time.monotonic() < deadline:
        time.sleep(0.2)
    ana = login(api_server, "ana")
    for _ in range(2):  # a retry of the same rating (its key): stored once
        answer = ana.post(api_server + "/pony/api/rate", json={"sha256": shas[5], "rating": 1, "key": "k-0123456789"},
                          timeout=10)  # fmt: skip
        assert answer.status_code == 200
    deadline = time.monotonic() + 10
    while True:
        with connect(get_settings()) as conn, conn.cursor() as cur:
            cur.execute("SELECT sha256, rating FROM human_rating WHERE rater = 'ana' ORDER BY rating_id")
            stored = cur.fetchall()
        if len(stored) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert stored == [(shas[0], 3), (shas[1], 4), (shas[2], 2), (shas[3], 5), (shas[5], 1)]
