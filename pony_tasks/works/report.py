"""What the matcher decided, for a person to look at: counts, and a contact sheet PNG — sample merged works (each
row: the canonical image first, then the others, with site and size) and the nearest misses (pairs judged
distinct, closest pHash first, with the reason) — so a wrong merge or a missed one shows at a glance."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg2.extensions

from pony_tasks.reports.contact_sheet import sheet_png
from pony_tasks.storage import ObjectStore


@dataclass
class WorksSummary:
    images: int
    works: int
    multi_image_works: int
    verdicts: dict[str, int] = field(default_factory=dict)
    operator_decisions: int = 0

    def text(self) -> str:
        share = self.multi_image_works / self.works if self.works else 0
        return (f"{self.images} images in {self.works} works; {self.multi_image_works} works hold more than one image "
                f"({share:.1%}); pair verdicts {dict(sorted(self.verdicts.items()))}; "
                f"{self.operator_decisions} by an operator")  # fmt: skip


def summarise(conn: psycopg2.extensions.connection) -> WorksSummary:
    with conn.cursor() as cur:
        cur.execute("""SELECT (SELECT count(*) FROM work_image), (SELECT count(*) FROM work),
                              (SELECT count(*) FROM (SELECT 1 FROM work_image GROUP BY work_id HAVING count(*) > 1) m),
                              (SELECT count(*) FROM work_pair WHERE decided_by = 'operator')""")  # fmt: skip
        images, works, multi, operator = cur.fetchone()
        cur.execute("SELECT verdict, count(*) FROM work_pair GROUP BY verdict")
        verdicts = dict(cur.fetchall())
    return WorksSummary(images, works, multi, verdicts, operator)


def contact_sheet(conn: psycopg2.extensions.connection, store: ObjectStore, works: int = 8, misses: int = 6) -> bytes:
    """PNG of what :func:`review` finds: up to ``works`` merged works (largest first; the canonical image, then up to
    six others), then up to ``misses`` nearest distinct pairs."""
    found = review(conn, works, misses)
    shas = {m["sha256"] for w in found["merged"] for m in w["images"][:7]}
    shas |= {sha for pair in found["near_misses"] for sha in (pair["a"], pair["b"])}
    with conn.cursor() as cur:
        cur.execute("SELECT sha256, storage_key FROM image WHERE sha256 = ANY(%s)", (sorted(shas),))
        key_of = dict(cur.fetchall())
    rows: list[list[tuple[str, str]]] = []
    for work in found["merged"]:
        row = []
        for image in work["images"][:7]:
            sites = "+".join(sorted({post.split()[0] for post in image["posts"]})) or "?"
            row.append((key_of[image["sha256"]], f"{'* ' if image['canonical'] else ''}w{work['work_id']} {sites} "
                                                 f"{image['width']}x{image['height']} {image['format']}"))  # fmt: skip
        rows.append(row)
    for pair in found["near_misses"]:
        why = "; ".join(pair["evidence"].get("reasons") or ["operator: distinct"])
        rows.append([(key_of[pair["a"]], f"NOT SAME {pair['evidence'].get('phash_bits', '?')} bits"),
                     (key_of[pair["b"]], why)])  # fmt: skip
    title = f"{len(found['merged'])} merged works (* canonical), then the {len(found['near_misses'])} nearest misses"
    return sheet_png(store, rows, title if rows else "no works with more than one image, and no near misses, yet")


def review(conn: psycopg2.extensions.connection, works: int = 30, misses: int = 20) -> dict:
    """What the works page shows, as JSON: the counts, the largest merged works (members with their sites and
    sizes, the canonical one first, the judged pairs among them with their evidence), the variants, and the nearest
    misses (distinct pairs, closest pHash first) — each with what an operator may do about it."""
    summary = summarise(conn)
    with conn.cursor() as cur:
        cur.execute("""SELECT w.work_id, w.canonical_sha256 FROM work w
                       JOIN work_image i USING (work_id) GROUP BY w.work_id HAVING count(*) > 1
                       ORDER BY count(*) DESC, w.work_id LIMIT %s""", (works,))  # fmt: skip
        merged = []
        for work_id, canonical in cur.fetchall():
            cur.execute("""SELECT i.sha256, m.width, m.height, m.format,
                                  coalesce((SELECT array_agg(b.site || ' ' || b.post_id ORDER BY b.site, b.post_id)
                                            FROM booru_post_image b WHERE b.sha256 = i.sha256), '{}')
                           FROM work_image i JOIN image m USING (sha256) WHERE i.work_id = %s
                           ORDER BY i.sha256 <> %s, i.sha256""", (work_id, canonical))  # fmt: skip
            members = [{"sha256": sha, "width": w, "height": h, "format": fmt, "posts": posts,
                        "canonical": sha == canonical} for sha, w, h, fmt, posts in cur.fetchall()]  # fmt: skip
            shas = [m["sha256"] for m in members]
            cur.execute("""SELECT sha_a, sha_b, verdict, decided_by, evidence, reason FROM work_pair
                           WHERE sha_a = ANY(%s) AND sha_b = ANY(%s) ORDER BY sha_a, sha_b""", (shas, shas))
            pairs = [_pair(row) for row in cur.fetchall()]
            merged.append({"work_id": work_id, "images": members, "pairs": pairs})
        found = {}
        for verdict, limit in (("variant", works), ("distinct", misses)):
            cur.execute("""SELECT sha_a, sha_b, verdict, decided_by, evidence, reason FROM work_pair
                           WHERE verdict = %s
                           ORDER BY (evidence->>'phash_bits')::int NULLS LAST, sha_a, sha_b LIMIT %s""",
                        (verdict, limit))  # fmt: skip
            found[verdict] = [_pair(row) for row in cur.fetchall()]
        paired = sorted({sha for pairs in found.values() for pair in pairs for sha in (pair["a"], pair["b"])})
        cur.execute("""SELECT sha256, array_agg(site || ' ' || post_id ORDER BY site, post_id) FROM booru_post_image
                       WHERE sha256 = ANY(%s) GROUP BY sha256""", (paired,))  # fmt: skip
        posts_of = dict(cur.fetchall())
        for pair in (pair for pairs in found.values() for pair in pairs):  # labelled as merged works' images are
            pair["a_posts"], pair["b_posts"] = posts_of.get(pair["a"], []), posts_of.get(pair["b"], [])
    return {"summary": summary.text(), "images": summary.images, "works": summary.works,
            "merged_works": summary.multi_image_works, "merged": merged, "variants": found["variant"],
            "near_misses": found["distinct"]}  # fmt: skip


def _pair(row: tuple) -> dict:
    sha_a, sha_b, verdict, decided_by, evidence, reason = row
    return {"a": sha_a, "b": sha_b, "verdict": verdict, "decided_by": decided_by, "evidence": evidence or {},
            "reason": reason}  # fmt: skip
