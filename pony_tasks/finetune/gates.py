"""The gates a fine-tune must pass before it starts; every decision is recorded in ``finetune_gate``.

1. ``dataset_quality`` — the caption set passed its data-quality check (the newest ``captions`` result for that set
   has no blocking failure);
2. ``active_model`` — its captions were made with the active aesthetic version;
3. ``new_images`` — at least ``min_new_images`` works (images, for exports older than works) the last completed
   run did not train on;
4. ``human_approval`` — a person approved it in the Airflow UI (recorded by the DAG with :func:`record`).

The DAG decides 1–3 on what an export *would* hold (:func:`check_selection_gates`: the active caption set, the
works of the selection) before anything is exported, so a skipped run writes nothing; :func:`check_gates` decides
them on an export already written (``pony finetune gates``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg2.extensions

from pony_tasks.finetune.data import Export


@dataclass(frozen=True)
class GateDecision:
    gate: str
    passed: bool
    detail: str


def _image_keys(manifest: dict) -> set[str]:
    return {k.rsplit("/", 1)[-1].rsplit(".", 1)[0] for k in manifest.get("files", {})
            if not k.endswith((".txt", ".json"))}  # fmt: skip


def evaluate_gates(
    conn: psycopg2.extensions.connection, export: Export, *, min_new_images: int, previous_manifest: dict | None
) -> list[GateDecision]:
    """The automatic gates on an export already written."""
    unit = "works" if "works" in export.manifest and "works" in (previous_manifest or {"works": []}) else "images"
    keys = (lambda m: set(m["works"])) if unit == "works" else _image_keys
    previous = keys(previous_manifest) if previous_manifest else set()
    if unit == "works" or isinstance(export.manifest.get("files"), dict):
        current = keys(export.manifest)
    else:  # a manifest that counts its files (their sums are in SHA256SUMS) beside an older one: the samples' images
        current = {sample.sha256 for sample in export.samples}
    return _decide(conn, export.manifest.get("caption_set"), export.manifest.get("aesthetic_version"),
                   len(current - previous), unit, min_new_images)  # fmt: skip


def evaluate_selection_gates(
    conn: psycopg2.extensions.connection, *, min_band: int | None, min_new_images: int, previous_manifest: dict | None
) -> list[GateDecision]:
    """The automatic gates on what an export of the active caption set (bands ≥ ``min_band``) would hold: its works
    are streamed from the selection, none written."""
    from pony_tasks.export.selection import selected_works

    with conn.cursor() as cur:
        cur.execute("SELECT s.set_id, s.aesthetic_version_id FROM caption_set s JOIN active_caption_set USING (set_id)")
        row = cur.fetchone()
    if row is None:
        return [GateDecision("dataset_quality", False, "no active caption set: run `pony captions regenerate`")]
    previous = set(previous_manifest.get("works", ())) if previous_manifest else set()
    new = sum(work not in previous for work in selected_works(conn, min_band))
    return _decide(conn, row[0], row[1], new, "works", min_new_images)


def _decide(conn: psycopg2.extensions.connection, set_id: int | None, version: int | None, new: int, unit: str,
            min_new_images: int) -> list[GateDecision]:  # fmt: skip
    decisions = []
    with conn.cursor() as cur:
        cur.execute("""SELECT blocking_failures, checked_at, outcome FROM dq_result WHERE suite = 'captions'
                       AND (batch->>'set_id')::bigint = %s ORDER BY result_id DESC LIMIT 1""", (set_id,))  # fmt: skip
        check = cur.fetchone()
        cur.execute("SELECT version_id FROM aesthetic_model WHERE status = 'active'")
        active = cur.fetchone()
    if check is None:
        decisions.append(GateDecision("dataset_quality", False, f"caption set {set_id} has no data-quality check: "
                                      f"run `pony quality check captions --set {set_id}`"))  # fmt: skip
    else:
        decisions.append(GateDecision("dataset_quality", check[0] == 0 and check[2] != "no_rows",
                                      f"captions check of set {set_id} at {check[1]:%Y-%m-%d %H:%M}: "
                                      + ("no rows" if check[2] == "no_rows" else
                                         f"{check[0]} blocking failures")))  # fmt: skip
    active_version = active[0] if active else None
    detail = f"captions from aesthetic version {version}, active {active_version}"
    decisions.append(GateDecision("active_model", version is not None and version == active_version, detail))
    # Works when both sides list them (the same picture re-posted, or a better copy becoming canonical, is not new),
    # else images (exports written before works were linked).
    decisions.append(GateDecision("new_images", new >= min_new_images,
                                  f"{new} {unit} not in the last completed run (need {min_new_images})"))  # fmt: skip
    return decisions


def approval_decision(answer: object) -> GateDecision:
    """The ``human_approval`` gate from the ApprovalOperator's XCom (``{"chosen_options": ["Approve"], …}``);
    no answer means the approval task was marked successful by hand (the demo does that)."""
    chosen = answer.get("chosen_options") if isinstance(answer, dict) else None
    if chosen is None:
        return GateDecision("human_approval", True, "approval task marked successful")
    who = answer.get("responded_by_user") or answer.get("responded_by") or {}
    name = who.get("name") or who.get("id") if isinstance(who, dict) else who
    return GateDecision("human_approval", "Approve" in chosen,
                        f"approval answer {chosen}" + (f" by {name}" if name else ""))  # fmt: skip


def record(conn: psycopg2.extensions.connection, context: str, dataset: str, decisions: list[GateDecision]) -> None:
    with conn.cursor() as cur:
        for d in decisions:
            cur.execute(
                "INSERT INTO finetune_gate (context, dataset, gate, passed, detail) VALUES (%s, %s, %s, %s, %s)",
                (context, dataset, d.gate, d.passed, d.detail),
            )


def previous_manifest(conn: psycopg2.extensions.connection, store) -> dict | None:  # noqa: ANN001
    """The manifest of the newest completed run's dataset (None before the first run)."""
    with conn.cursor() as cur:
        cur.execute("SELECT dataset FROM finetune_run WHERE status = 'complete' ORDER BY run_id DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        return None
    try:
        return json.loads(store.get_bytes(f"exports/{row[0]}/manifest.json"))
    except (FileNotFoundError, KeyError):
        return None


def check_selection_gates(
    dataset: str, *, min_band: int | None, min_new_images: int, context: str, settings=None  # noqa: ANN001
) -> list[GateDecision]:
    """Evaluate the automatic gates before exporting ``dataset`` (the DAG's order) and record every decision."""
    from pony_tasks.config import get_settings
    from pony_tasks.db import connect
    from pony_tasks.storage import open_store

    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        decisions = evaluate_selection_gates(conn, min_band=min_band, min_new_images=min_new_images,
                                             previous_manifest=previous_manifest(conn, store))  # fmt: skip
        record(conn, context, dataset, decisions)
    return decisions


def check_gates(dataset: str, *, min_new_images: int, context: str, settings=None) -> list[GateDecision]:  # noqa: ANN001
    """Evaluate the automatic gates for an export and record every decision (the CLI and the DAG both call this)."""
    from pony_tasks.config import get_settings
    from pony_tasks.db import connect
    from pony_tasks.finetune.data import load_export
    from pony_tasks.storage import open_store

    settings = settings or get_settings()
    store = open_store(settings=settings)
    export = load_export(store, dataset)
    with connect(settings) as conn:
        decisions = evaluate_gates(conn, export, min_new_images=min_new_images,
                                   previous_manifest=previous_manifest(conn, store))  # fmt: skip
        record(conn, context, dataset, decisions)
    return decisions
