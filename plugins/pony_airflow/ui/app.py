"""``/pony``: the rating page (keys 1–5 rate, s skip, u undo; site and tags hidden unless asked), its JSON API, the
reports page, the works page (merged works, variants and near misses, with split / not-the-same / same-picture
decisions) and the Great Expectations Data Docs. Every route requires a valid Airflow session (pages redirect to
Airflow's login); ratings are stored with the Airflow user's name. No OpenAPI page or schema is served: the API's
shape is not for anonymous visitors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field

from pony_airflow.ui.auth import current_user, login_url

HERE = Path(__file__).parent
app = FastAPI(title="Pony Pipeline", description="Rating tool and reports", docs_url=None, redoc_url=None,
              openapi_url=None)
User = Annotated[object, Depends(current_user)]


def _connect():
    from pony_tasks.db import connect

    return connect()


async def _page(request: Request, name: str) -> Response:
    try:
        await current_user(request)
    except HTTPException:
        return RedirectResponse(login_url(str(request.url.path)), status_code=302)
    return HTMLResponse((HERE / name).read_text(encoding="utf-8"))


@app.get("/")
async def index(request: Request) -> Response:
    return RedirectResponse(str(request.url_for("rate_page")), status_code=302)


@app.get("/rate", response_class=HTMLResponse)
async def rate_page(request: Request) -> Response:
    return await _page(request, "rate.html")


@app.get("/reports", response_class=HTMLResponse)
async def reports_page(request: Request) -> Response:
    return await _page(request, "reports.html")


@app.get("/works", response_class=HTMLResponse)
async def works_page(request: Request) -> Response:
    return await _page(request, "works.html")


@app.get("/api/works")
def works_review(user: User, works: int = Query(30, ge=1, le=500), misses: int = Query(20, ge=0, le=500)) -> dict:
    from pony_tasks.works.report import review

    with _connect() as conn:
        return review(conn, works, misses)


@app.get("/api/works/contact-sheet.png")
def works_contact_sheet(user: User) -> Response:
    from pony_tasks.storage import open_store
    from pony_tasks.works.report import contact_sheet

    with _connect() as conn:
        png = contact_sheet(conn, open_store())
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


SHA = r"^[0-9a-f]{64}$"


class PairDecision(BaseModel):
    a: str = Field(pattern=SHA)
    b: str = Field(pattern=SHA)
    verdict: str = Field(pattern=r"^(duplicate|variant|distinct)$")
    reason: str = Field(min_length=3, max_length=500)


class SplitDecision(BaseModel):
    sha256: str = Field(pattern=SHA)
    reason: str = Field(min_length=3, max_length=500)


APPLIES = "the next works run (DAG works_link, or `pony works run`) applies it"


@app.post("/api/works/pair")
def works_pair_decision(body: PairDecision, user: User) -> dict:
    """An operator's verdict on a pair (it wins over the matcher's, for good); recorded with who decided."""
    from pony_tasks.works.link import record_operator_decision

    with _connect() as conn:
        record_operator_decision(conn, body.a, body.b, body.verdict, f"{body.reason} ({user.get_name()})")
    return {"recorded": body.verdict, "by": user.get_name(), "applies": APPLIES}


@app.post("/api/works/split")
def works_split(body: SplitDecision, user: User) -> dict:
    from pony_tasks.works.link import split_image

    with _connect() as conn:
        try:
            count = split_image(conn, body.sha256, f"{body.reason} ({user.get_name()})")
        except LookupError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
    return {"recorded": "distinct", "from_images": count, "by": user.get_name(), "applies": APPLIES}


@app.get("/api/me")
async def me(user: User) -> dict:
    """Who is rating; ``shared`` when Airflow's all-admins dev mode gives every visitor the same name."""
    from airflow.configuration import conf

    return {"name": user.get_name(), "shared": conf.getboolean("core", "simple_auth_manager_all_admins",
                                                                 fallback=False)}  # fmt: skip


@app.get("/api/sets")
def rating_sets(user: User) -> list[dict]:
    with _connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT set_id, size, created_at FROM rating_set ORDER BY set_id DESC")
        return [{"set_id": s, "size": n, "created_at": c.isoformat()} for s, n, c in cur.fetchall()]


class NewSet(BaseModel):
    size: int = Field(ge=1, le=100_000)


@app.post("/api/sets")
def create_rating_set(body: NewSet, user: User) -> dict:
    """A new rating set from the page (what `pony ratings sample --n SIZE` does)."""
    from pony_tasks.ratings.sample import sample_rating_set

    try:
        picked = sample_rating_set(body.size)
    except (LookupError, ValueError) as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    return {"set_id": picked.set_id, "size": picked.size, "strata": picked.strata}


@app.get("/api/next")
def next_image_route(user: User, set_id: int, mode: str = "stratified",
                     exclude: Annotated[list[str] | None, Query()] = None,
                     count: int = Query(1, ge=1, le=10)) -> dict:  # fmt: skip
    """The next image (and with ``count`` the ones after it, which the page loads ahead: ``queue``)."""
    from pony_tasks.config import get_settings
    from pony_tasks.ratings.tool import next_images

    with _connect() as conn:
        try:
            found = next_images(conn, set_id, user.get_name(), mode, exclude,
                                repeat_share=get_settings().rating_repeat_share, count=count)  # fmt: skip
        except (LookupError, ValueError) as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
    return {**found[0].__dict__, "queue": [item.__dict__ for item in found[1:]]}


@app.get("/api/progress")
def rating_progress(user: User) -> dict:
    """The rater's ratings in all and in the last hour, and the goal (``rating_goal``): the page's pace line."""
    from pony_tasks.config import get_settings
    from pony_tasks.ratings.tool import progress

    with _connect() as conn:
        return {**progress(conn, user.get_name()), "goal": get_settings().rating_goal}


@app.get("/api/image/{sha256}")
def image(sha256: str, user: User) -> Response:
    from pony_tasks.storage import open_store

    with _connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT storage_key, format FROM image WHERE sha256 = %s", (sha256,))
        row = cur.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such image")
    return Response(open_store().get_bytes(row[0]), media_type=f"image/{row[1].lower()}",
                    headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip


class RatingIn(BaseModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rating: int = Field(ge=1, le=5)
    key: str | None = Field(None, min_length=8, max_length=64)  # made by the page per shown image: stored once


@app.post("/api/rate")
def rate(body: RatingIn, user: User) -> dict:
    from pony_tasks.ratings.tool import record_rating

    with _connect() as conn:
        try:
            rating_id = record_rating(conn, body.sha256, body.rating, user.get_name(), body.key)
        except LookupError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from exc
    return {"rating_id": rating_id, "rater": user.get_name()}


@app.post("/api/undo")
def undo(user: User) -> dict:
    from pony_tasks.ratings.tool import undo_last

    with _connect() as conn:
        return {"sha256": undo_last(conn, user.get_name())}


@app.get("/api/report/{name}.png")
async def report_plot(name: str, user: User) -> Response:
    from pony_tasks.reports.plots import PLOTS

    if name not in PLOTS:
        raise HTTPException(status_code=404, detail=f"no report {name!r}; choose from {sorted(PLOTS)}")
    png = await asyncio.to_thread(PLOTS[name])
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@app.get("/api/report/quality")
def report_quality(user: User) -> list[dict]:
    from pony_tasks.reports.plots import latest_quality_results

    return latest_quality_results()


@app.get("/api/report/finetune-gates")
def report_finetune_gates(user: User) -> list[dict]:
    from pony_tasks.reports.plots import latest_finetune_gates

    return latest_finetune_gates()


@app.get("/api/report/ratings")
def report_ratings(user: User) -> dict:
    """The ratings as `pony ratings stats` prints them (test–retest, drift, per site/decile/style cluster) and the
    aesthetic model's held-out error per site and style cluster (where the next ratings teach it most)."""
    from dataclasses import asdict

    from pony_tasks.ratings.consistency import consistency
    from pony_tasks.ratings.sample import focus_on_weakest

    with _connect() as conn:
        found = consistency(conn)
        with conn.cursor() as cur:
            cur.execute("""SELECT version_id, metrics FROM aesthetic_model ORDER BY status = 'active' DESC,
                           version_id DESC LIMIT 1""")  # fmt: skip
            row = cur.fetchone()
        try:
            weakest = focus_on_weakest(conn).clusters
        except LookupError:
            weakest = []
    metrics = row[1] if row else {}
    return {**asdict(found), "text": found.describe(), "aesthetic_version": row[0] if row else None,
            "heldout_by_site": metrics.get("heldout_by_site", {}),
            "heldout_by_cluster": metrics.get("heldout_by_cluster", {}), "weakest": weakest}  # fmt: skip


@app.get("/api/report/plan")
def report_plan(user: User) -> dict:
    """``pony plan`` on the deployment's settings (published site sizes, no request to any site): read-only."""
    from pony_tasks.config import get_settings
    from pony_tasks.plan import make_plan

    plan = make_plan(get_settings())
    return {**plan.as_dict(), "table": plan.table()}


@app.get("/quality-docs/{path:path}")
async def quality_docs(path: str, request: Request) -> Response:
    """The Great Expectations Data Docs, behind the login: each check's page from the object store
    (``quality/data-docs/…``, published by the check wherever it ran), else from this machine's site
    (``PONY_HOME/gx/uncommitted/data_docs/local_site``); pages point at the local copies of the scripts and styles
    GX loads from CDNs (quality.docs_assets). The index lists what this machine's site holds; where it has none (a
    deployment whose checks run in pods), the reports page lists every result with its page."""
    import mimetypes
    from posixpath import normpath

    from fastapi.responses import FileResponse, HTMLResponse

    from pony_tasks.quality.checks import DOCS_PREFIX, data_docs_index
    from pony_tasks.quality.docs_assets import rewrite_html
    from pony_tasks.storage import open_store

    try:
        await current_user(request)
    except HTTPException:
        return RedirectResponse(login_url(str(request.url.path)), status_code=302)
    path = path or "index.html"
    clean = normpath(path)
    if clean.startswith(("..", "/")) or clean != path:
        raise HTTPException(status_code=404, detail="no such Data Docs page")
    kind = mimetypes.guess_type(clean)[0] or "application/octet-stream"
    store = open_store()
    if await asyncio.to_thread(store.exists, DOCS_PREFIX + clean):
        data = await asyncio.to_thread(store.get_bytes, DOCS_PREFIX + clean)
        if clean.endswith(".html"):
            return HTMLResponse(rewrite_html(data.decode("utf-8")))
        return Response(data, media_type=kind)
    site = data_docs_index().parent.resolve()
    target = (site / clean).resolve()
    if target.is_relative_to(site) and target.is_file():
        if target.suffix == ".html":
            return HTMLResponse(rewrite_html(target.read_text(encoding="utf-8")))
        return FileResponse(target)
    if clean == "index.html":
        return RedirectResponse(str(request.url_for("reports_page")), status_code=302)
    raise HTTPException(status_code=404, detail="no such Data Docs page (run a check: `pony quality check …`)")


@app.get("/docs-assets/{path:path}")
async def docs_assets(path: str) -> Response:
    """The Data Docs pages' scripts, styles and fonts (public libraries: no login needed)."""
    from fastapi.responses import FileResponse

    from pony_tasks.quality.docs_assets import assets_dir

    root = assets_dir().resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise HTTPException(status_code=404, detail=f"no Data Docs asset {path!r} (run `pony quality docs-assets`)")
    return FileResponse(target, headers={"Cache-Control": "max-age=86400"})


class BarePrefixRedirect:
    """ASGI middleware on Airflow's root app: ``/pony`` (no slash) is not inside the mounted app — Airflow's UI
    would show its own "not found" — so it is sent to the rating page."""

    def __init__(self, app, prefix: str = "/pony") -> None:  # noqa: ANN001 - an ASGI app
        self.app, self.prefix = app, prefix

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] == "http" and scope.get("path") == self.prefix:
            await RedirectResponse(self.prefix + "/rate", status_code=302)(scope, receive, send)
            return
        await self.app(scope, receive, send)
