"""Group images into works: candidates → judged pairs (stored with evidence) → connected components of the
``duplicate`` pairs, never joining two images an operator said are distinct → works whose ids stay stable across
runs. Operator decisions are never overwritten by the matcher; a re-run with nothing new changes nothing."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import psycopg2.extensions

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.db.bulk import copy_rows
from pony_tasks.embed.run import load_embeddings
from pony_tasks.images.validate import Signatures
from pony_tasks.runs import recorded_run
from pony_tasks.storage import open_store
from pony_tasks.works.candidates import candidate_pairs
from pony_tasks.works.decide import ImageFacts, canonical_image, judge
from pony_tasks.works.neighbours import median_random_cosine
from pony_tasks.works.synonyms import common_spelling

log = logging.getLogger(__name__)


@dataclass
class WorksReport:
    images: int = 0
    candidates: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    works: int = 0
    multi_image_works: int = 0
    changed_images: int = 0
    embeddings: str = ""

    def summary(self) -> str:
        return (f"works: {self.images} images in {self.works} works ({self.multi_image_works} with more than one "
                f"image); {self.candidates} candidate pairs judged {dict(sorted(self.verdicts.items()))}; "
                f"{self.changed_images} images changed work; {self.embeddings}")  # fmt: skip


def _facts(conn: psycopg2.extensions.connection) -> dict[str, ImageFacts]:
    """Every image with its signatures (images without them — `pony images hash` — are left out) and the artist tags
    of its posts (what tells an artist's alternate version from another artist's edit, and another artist's picture
    from a re-post). A post without tag groups (Gelbooru's API gives no tag types) credits the tags of its own that
    another site's posts file as artists (Gelbooru mirrors Danbooru's tag names)."""
    with conn.cursor(name="works_facts") as cur:  # server-side: rows arrive in batches, never all at once
        cur.itersize = 10_000
        # Set-based (every step a scan, a hash or a sort, linear in posts and tags): the artists each image's posts
        # credit, aggregated once per image, then joined to the images — no subquery per post, no grouping of the
        # wide signature rows.
        cur.execute("""WITH known_artist AS MATERIALIZED (
                           SELECT DISTINCT lower(replace(regexp_replace(a.tag, '^artist:', ''), ' ', '_')) AS name
                           FROM booru_post p, jsonb_array_elements_text(p.tag_groups -> 'artist') AS a(tag)
                           WHERE jsonb_typeof(p.tag_groups -> 'artist') = 'array'),
                       credits AS (
                           SELECT b.sha256, g.tag
                           FROM booru_post_image b JOIN booru_post p ON p.site = b.site AND p.post_id = b.post_id,
                                jsonb_array_elements_text(p.tag_groups -> 'artist') AS g(tag)
                           WHERE jsonb_typeof(p.tag_groups -> 'artist') = 'array'
                           UNION ALL
                           SELECT b.sha256, t.tag
                           FROM booru_post_image b JOIN booru_post p ON p.site = b.site AND p.post_id = b.post_id,
                                unnest(p.tags) AS t(tag)
                           WHERE p.tag_groups = '{}'::jsonb AND lower(t.tag) IN (SELECT name FROM known_artist)),
                       artists AS (SELECT sha256, array_agg(DISTINCT tag) AS tags FROM credits GROUP BY sha256)
                       SELECT i.sha256, i.width, i.height, i.format, i.byte_size, i.phash, i.colour_thumb, i.detail,
                              i.inner_phash, i.inner_colour_thumb, i.inner_detail,
                              coalesce(i.crop_phash, '{}'), coalesce(i.crop_colour_thumb, '{}'),
                              coalesce(i.crop_detail, '{}'), coalesce(a.tags, '{}')
                       FROM image i LEFT JOIN artists a ON a.sha256 = i.sha256
                       WHERE i.phash IS NOT NULL AND i.inner_detail IS NOT NULL""")  # fmt: skip
        facts = {}
        for (sha, width, height, fmt, size, phash, thumb, detail, inner_phash, inner_thumb, inner_detail, crop_phash,
             crop_thumb, crop_detail, artists) in cur:  # fmt: skip
            signatures = Signatures(phash, bytes(thumb), bytes(detail), inner_phash, bytes(inner_thumb),
                                    bytes(inner_detail), tuple(crop_phash), tuple(map(bytes, crop_thumb)),
                                    tuple(map(bytes, crop_detail)))  # fmt: skip
            facts[sha] = ImageFacts(sha, width, height, fmt, size, signatures,
                                    frozenset(common_spelling(t.removeprefix("artist:")) for t in artists))
        return facts


MAX_UNRELATED_COSINE = 0.8  # median cosine of random pairs above which a model's embeddings are not used


def _embeddings(conn: psycopg2.extensions.connection, settings: Settings, report: WorksReport
                ) -> tuple[list[str], np.ndarray] | None:  # fmt: skip
    """The newest embedding model's vectors — None when no image has one, or when the model cannot tell pictures
    apart (random pairs as close as near-duplicates: an untrained model, such as the demo's seeded one)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT model_id, name FROM embedding_model m WHERE EXISTS (SELECT 1 FROM embedding_shard s
                       WHERE s.model_id = m.model_id) ORDER BY model_id DESC LIMIT 1""")  # fmt: skip
        row = cur.fetchone()
    if row is None:
        report.embeddings = "no embeddings yet"
        return None
    ids, matrix = load_embeddings(conn, open_store(settings=settings), row[0])
    unrelated = median_random_cosine(matrix)
    if not ids or unrelated > MAX_UNRELATED_COSINE:
        report.embeddings = (f"embeddings of model {row[0]} ({row[1]}) not used: random pairs have a median cosine "
                             f"of {unrelated:.2f} (> {MAX_UNRELATED_COSINE}: the model does not tell pictures apart)")
        log.warning("works: %s", report.embeddings)
        return None
    report.embeddings = f"embeddings of model {row[0]} ({row[1]}) used (random pairs: median cosine {unrelated:.2f})"
    return ids, matrix


def judge_candidates(conn: psycopg2.extensions.connection, facts: dict[str, ImageFacts],
                     only_with: set[str] | None = None,
                     embeddings: tuple[list[str], np.ndarray] | None = None) -> tuple[int, Counter]:  # fmt: skip
    """Judge every candidate pair and store the matcher's verdicts (operator decisions are left as they are)."""
    pairs = candidate_pairs(facts, embeddings, only_with)
    row_of = {sha: i for i, sha in enumerate(embeddings[0])} if embeddings else {}
    verdicts: Counter = Counter()

    def judged():
        for a, b in sorted(pairs):
            cosine = None
            if a in row_of and b in row_of:
                matrix = embeddings[1]  # type: ignore[index]
                cosine = float(matrix[row_of[a]].astype(np.float32) @ matrix[row_of[b]].astype(np.float32))
            verdict, evidence = judge(facts[a], facts[b], cosine)
            evidence["found_by"] = sorted(pairs[(a, b)])
            verdicts[verdict] += 1
            yield a, b, verdict, json.dumps(evidence)

    with conn.cursor() as cur:  # streamed through COPY, then one upsert (not a statement per pair)
        cur.execute("CREATE TEMPORARY TABLE works_judged (sha_a text, sha_b text, verdict text, evidence jsonb) "
                    "ON COMMIT DROP")  # fmt: skip
        copy_rows(cur, "works_judged", ("sha_a", "sha_b", "verdict", "evidence"), judged())
        cur.execute("""INSERT INTO work_pair (sha_a, sha_b, verdict, decided_by, evidence)
                       SELECT sha_a, sha_b, verdict, 'matcher', evidence FROM works_judged ORDER BY sha_a, sha_b
                       ON CONFLICT (sha_a, sha_b) DO UPDATE SET verdict = EXCLUDED.verdict,
                           evidence = EXCLUDED.evidence, decided_at = now()
                       WHERE work_pair.decided_by = 'matcher' AND (work_pair.verdict, work_pair.evidence)
                             IS DISTINCT FROM (EXCLUDED.verdict, EXCLUDED.evidence)""")
        cur.execute("DROP TABLE works_judged")
    return len(pairs), verdicts


def components(shas: list[str], duplicates: list[tuple[str, str]], distinct: set[tuple[str, str]]) -> list[set[str]]:
    """Connected components of the duplicate pairs, never merging two components when that would put a pair an
    operator called distinct into one work."""
    parent = {sha: sha for sha in shas}
    members = {sha: {sha} for sha in shas}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    forbidden: dict[str, set[str]] = {}
    for a, b in distinct:
        forbidden.setdefault(a, set()).add(b)
        forbidden.setdefault(b, set()).add(a)
    for a, b in duplicates:
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        small, large = sorted((ra, rb), key=lambda r: len(members[r]))
        if any(forbidden.get(sha, set()) & members[large] for sha in members[small]):
            continue  # an operator split these apart
        parent[small] = large
        members[large] |= members.pop(small)
    return [members[r] for r in {root(s) for s in shas}]


def link_works(conn: psycopg2.extensions.connection, facts: dict[str, ImageFacts]) -> tuple[int, int, int]:
    """Rewrite work membership from the stored pair decisions; returns (works, multi-image works, images that
    changed work). A component keeps the work id most of its images already had (stable ids)."""
    with conn.cursor() as cur:
        cur.execute("SELECT sha_a, sha_b, verdict, decided_by FROM work_pair")
        pairs = cur.fetchall()
        cur.execute("SELECT sha256, work_id FROM work_image")
        current = dict(cur.fetchall())
        cur.execute("SELECT work_id, canonical_sha256 FROM work")
        canonical_of = dict(cur.fetchall())
    duplicates = [(a, b) for a, b, verdict, _ in pairs if verdict == "duplicate" and a in facts and b in facts]
    distinct = {(a, b) for a, b, verdict, by in pairs if verdict == "distinct" and by == "operator"}
    # A work's id goes to the group that holds its canonical image, else to the group holding most of its images.
    groups = sorted(components(sorted(facts), duplicates, distinct),
                    key=lambda g: (-sum(canonical_of.get(current.get(s)) == s for s in g), -len(g), min(g)))
    taken: set[int] = set()
    changed = 0
    updates: list[tuple[int, str]] = []  # (work id, canonical image) of works that continue
    fresh: list[tuple[str, list[str]]] = []  # (canonical image, images) of groups that need a new work
    moves: list[tuple[str, int]] = []  # (image, work id) where an image's work changes
    for group in groups:
        held = Counter(current[s] for s in group if s in current and current[s] not in taken)
        canonical = canonical_image([facts[s] for s in group]).sha256
        if not held:
            fresh.append((canonical, sorted(group)))
            continue
        work_id = min(held, key=lambda w: (canonical_of.get(w) not in group, -held[w], w))
        if canonical_of.get(work_id) != canonical:
            updates.append((work_id, canonical))
        taken.add(work_id)
        moved = [s for s in group if current.get(s) != work_id]
        changed += len(moved)
        moves.extend((sha, work_id) for sha in moved)
    # Written set-wise (COPY into temporary tables, one statement each): a first run at the real size moves every
    # image, and a statement per image would be tens of millions of round trips.
    with conn.cursor() as cur:
        cur.execute("SELECT nextval(pg_get_serial_sequence('work', 'work_id')) FROM generate_series(1, %s)",
                    (len(fresh),))  # fmt: skip
        new_ids = [row[0] for row in cur.fetchall()]
        for work_id, (_, group) in zip(new_ids, fresh, strict=True):
            changed += len(group)
            moves.extend((sha, work_id) for sha in group)
        cur.execute("""CREATE TEMPORARY TABLE works_new (work_id bigint, canonical_sha256 text) ON COMMIT DROP;
                       CREATE TEMPORARY TABLE works_kept (work_id bigint, canonical_sha256 text) ON COMMIT DROP;
                       CREATE TEMPORARY TABLE works_moved (sha256 text, work_id bigint) ON COMMIT DROP""")
        copy_rows(cur, "works_new", ("work_id", "canonical_sha256"),
                  ((work_id, canonical) for work_id, (canonical, _) in zip(new_ids, fresh, strict=True)))
        copy_rows(cur, "works_kept", ("work_id", "canonical_sha256"), updates)
        copy_rows(cur, "works_moved", ("sha256", "work_id"), moves)
        cur.execute("""INSERT INTO work (work_id, canonical_sha256) OVERRIDING SYSTEM VALUE
                       SELECT work_id, canonical_sha256 FROM works_new ORDER BY work_id""")
        cur.execute("""UPDATE work w SET canonical_sha256 = k.canonical_sha256, updated_at = now() FROM works_kept k
                       WHERE w.work_id = k.work_id AND w.canonical_sha256 <> k.canonical_sha256""")
        cur.execute("""INSERT INTO work_image (sha256, work_id) SELECT sha256, work_id FROM works_moved ORDER BY sha256
                       ON CONFLICT (sha256) DO UPDATE SET work_id = EXCLUDED.work_id""")
        cur.execute("DROP TABLE works_new, works_kept, works_moved")
        cur.execute("DELETE FROM work w WHERE NOT EXISTS (SELECT 1 FROM work_image i WHERE i.work_id = w.work_id)")
    return len(groups), sum(1 for g in groups if len(g) > 1), changed


def run_works(settings: Settings | None = None, *, only_new: bool = False) -> WorksReport:
    """Judge candidates (``only_new``: pairs with an image not yet in a work — incremental) and relink; recorded as
    a ``works`` pipeline run whose summary holds the merged share the works suite compares the next run with."""
    settings = settings or get_settings()
    report = WorksReport()
    with connect(settings) as conn, recorded_run(conn, "works", {"only_new": only_new}) as run:
        facts = _facts(conn)
        report.images = len(facts)
        only_with = None
        if only_new:
            with conn.cursor() as cur:
                cur.execute("SELECT sha256 FROM work_image")
                linked = {row[0] for row in cur.fetchall()}
            only_with = set(facts) - linked
        embeddings = _embeddings(conn, settings, report)
        report.candidates, verdicts = judge_candidates(conn, facts, only_with, embeddings)
        report.verdicts = dict(verdicts)
        report.works, report.multi_image_works, report.changed_images = link_works(conn, facts)
        run.summary = {"images": report.images, "works": report.works, "multi_image_works": report.multi_image_works,
                       "merged_share": report.multi_image_works / report.works if report.works else 0.0,
                       "candidates": report.candidates, "verdicts": report.verdicts,
                       "changed_images": report.changed_images}  # fmt: skip
    return report


def record_operator_decision(conn: psycopg2.extensions.connection, a: str, b: str, verdict: str, reason: str) -> None:
    """An operator's verdict on a pair (``distinct`` to unlink, ``duplicate`` to link); it wins over the matcher's."""
    if verdict not in ("duplicate", "variant", "distinct"):
        raise ValueError(f"verdict must be duplicate, variant or distinct, not {verdict!r}")
    if a == b:
        raise ValueError("a pair needs two different images")
    a, b = sorted((a, b))
    with conn.cursor() as cur:
        cur.execute("""INSERT INTO work_pair (sha_a, sha_b, verdict, decided_by, evidence, reason)
                       VALUES (%s, %s, %s, 'operator', '{}', %s)
                       ON CONFLICT (sha_a, sha_b) DO UPDATE SET verdict = EXCLUDED.verdict, decided_by = 'operator',
                           reason = EXCLUDED.reason, decided_at = now()""", (a, b, verdict, reason))  # fmt: skip


def split_image(conn: psycopg2.extensions.connection, sha256: str, reason: str) -> int:
    """Take an image out of its work: an operator ``distinct`` decision against every other member; returns how
    many. The next link keeps it apart, also after re-runs."""
    with conn.cursor() as cur:
        cur.execute("""SELECT o.sha256 FROM work_image i JOIN work_image o ON o.work_id = i.work_id
                       AND o.sha256 <> i.sha256 WHERE i.sha256 = %s""", (sha256,))  # fmt: skip
        others = [row[0] for row in cur.fetchall()]
    if not others:
        raise LookupError(f"image {sha256[:12]}… is not in a work with other images")
    for other in others:
        record_operator_decision(conn, sha256, other, "distinct", reason)
    return len(others)
