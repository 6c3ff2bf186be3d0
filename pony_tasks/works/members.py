"""Which work each image belongs to — the one lookup every stage that deduplicates by work uses (exports, the
aesthetic held-out split). Light: no image or hashing imports."""

from __future__ import annotations

import psycopg2.extensions


def work_of(conn: psycopg2.extensions.connection, shas: list[str], *, shared_only: bool = False) -> dict[str, int]:
    """sha256 → work id for those of ``shas`` that are in a work (``shared_only``: only works of two or more images,
    so a work of one image keeps standing for itself)."""
    with conn.cursor() as cur:
        cur.execute("""SELECT sha256, work_id FROM work_image WHERE sha256 = ANY(%s) AND (NOT %s OR work_id IN (
                           SELECT work_id FROM work_image GROUP BY work_id HAVING count(*) > 1))""",
                    (shas, shared_only))  # fmt: skip
        return dict(cur.fetchall())


def work_key(sha256: str, work_of_image: dict[str, int]) -> str:
    """``w<id>`` for an image in a work, else the image itself."""
    return f"w{work_of_image[sha256]}" if sha256 in work_of_image else sha256


def works_among(conn: psycopg2.extensions.connection, shas: list[str]) -> int:
    """How many works ``shas`` come from (an image in no work counts as one): equal to ``len(set(shas))`` exactly
    when no two of them show the same picture."""
    members = work_of(conn, shas)
    return len({work_key(sha, members) for sha in shas})
