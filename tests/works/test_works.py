"""Works from planted near-duplicates: altered copies of the same picture are linked (precision and recall by kind
of alteration), hard negatives are not; re-runs change nothing; an operator's split survives; new images join
existing works without renumbering them."""

from __future__ import annotations

import io
import itertools
import random

from PIL import Image, ImageDraw

from pony_tasks.db import connect
from pony_tasks.images.validate import SIGNATURE_COLUMNS, decode
from pony_tasks.works.link import run_works, split_image

ALTERATIONS = {
    "resized": lambda im: _save(im.resize((im.width * 2 // 3, im.height * 2 // 3), Image.LANCZOS), "PNG"),
    "jpeg q85": lambda im: _save(im, "JPEG", quality=85),
    "jpeg q45": lambda im: _save(im, "JPEG", quality=45),
    "png→jpeg resized": lambda im: _save(im.resize((im.width // 2, im.height // 2)), "JPEG", quality=80),
    "webp": lambda im: _save(im, "WEBP", quality=75),
    "border cropped": lambda im: _save(im.crop((8, 6, im.width - 8, im.height - 6)), "PNG"),
    "signed": lambda im: _save(_signed(im), "JPEG", quality=90),
}


def _artwork(seed: int, size=(320, 240)) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y, w, h = rng.randrange(size[0]), rng.randrange(size[1]), rng.randrange(20, 140), rng.randrange(20, 120)
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h),
                                                                 fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def _signed(image: Image.Image) -> Image.Image:
    copy = image.copy()
    ImageDraw.Draw(copy).text((copy.width - 70, copy.height - 18), "@artist", fill=(250, 250, 250))
    return copy


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _store(settings, data: bytes) -> str:
    decoded = decode(data, 50_000_000)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"""INSERT INTO image (sha256, storage_key, byte_size, width, height, format,
                                           {", ".join(SIGNATURE_COLUMNS)})
                        VALUES ({", ".join(["%s"] * (6 + len(SIGNATURE_COLUMNS)))}) ON CONFLICT DO NOTHING""",
                    (decoded.sha256, f"images/{decoded.sha256}", len(data), decoded.width, decoded.height,
                     decoded.format, *decoded.signatures.columns()))  # fmt: skip
    return decoded.sha256


def _works(settings) -> dict[str, int]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256, work_id FROM work_image")
        return dict(cur.fetchall())


def test_planted_duplicates_are_linked_and_hard_negatives_are_not(migrated) -> None:
    truth: dict[str, int] = {}  # sha → picture
    kind_of: dict[str, str] = {}
    for picture in range(12):
        original = _artwork(picture)
        truth[_store(migrated, _save(original, "PNG"))] = picture
        for kind, alter in ALTERATIONS.items():
            sha = _store(migrated, alter(original))
            truth[sha], kind_of[sha] = picture, kind
    negatives = {}
    for picture in range(4):  # another artist's colour edit of the same line art; and other pictures
        negatives[_store(migrated, _save(Image.merge("RGB", _artwork(picture).split()[::-1]), "PNG"))] = "colour swap"
    for seed in range(100, 120):
        negatives[_store(migrated, _save(_artwork(seed), "PNG"))] = "other picture"

    report = run_works(migrated)
    works = _works(migrated)
    assert report.images == len(truth) + len(negatives) == len(works)
    same_truth = {(a, b) for a, b in itertools.combinations(sorted(truth), 2) if truth[a] == truth[b]}
    linked = {(a, b) for a, b in itertools.combinations(sorted(works), 2) if works[a] == works[b]}
    true_links = linked & same_truth
    precision = len(true_links) / len(linked)
    recall = len(true_links) / len(same_truth)
    assert precision >= 0.99 and recall >= 0.95, (precision, recall)
    for kind in ALTERATIONS:  # recall by kind of alteration: each altered copy is in its original's work
        copies = [s for s, k in kind_of.items() if k == kind]
        originals = {truth[s]: o for o in truth if o not in kind_of for s in [o]}
        joined = sum(works[s] == works[originals[truth[s]]] for s in copies)
        assert joined == len(copies), (kind, joined, len(copies))
    for sha, kind in negatives.items():  # no hard negative is merged with anything
        assert sum(w == works[sha] for w in works.values()) == 1, kind
    # the canonical image of each work is its largest lossless member: the original PNG
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT canonical_sha256 FROM work w WHERE (SELECT count(*) FROM work_image i "
                    "WHERE i.work_id = w.work_id) > 1")  # fmt: skip
        canonical = {row[0] for row in cur.fetchall()}
    assert canonical == {s for s in truth if s not in kind_of}

    again = run_works(migrated)
    assert again.changed_images == 0 and _works(migrated) == works  # re-running changes nothing


def test_an_operators_split_survives_reruns_and_new_images_join_existing_works(migrated) -> None:
    originals = [_artwork(p) for p in range(3)]
    first = [_store(migrated, _save(im, "PNG")) for im in originals]
    copies = [_store(migrated, ALTERATIONS["jpeg q85"](im)) for im in originals]
    run_works(migrated)
    before = _works(migrated)
    assert [before[a] == before[b] for a, b in zip(first, copies, strict=True)] == [True, True, True]

    with connect(migrated) as conn:
        assert split_image(conn, copies[0], reason="a re-drawn version, not a copy") == 1
    run_works(migrated)
    run_works(migrated)
    after = _works(migrated)
    assert after[copies[0]] != after[first[0]] and after[first[0]] == before[first[0]]

    late = [_store(migrated, ALTERATIONS["resized"](im)) for im in originals[1:]]
    report = run_works(migrated, only_new=True)
    final = _works(migrated)
    assert report.changed_images == len(late)  # only the new images moved into works
    assert [final[s] for s in late] == [before[s] for s in first[1:]]  # the existing works, same ids


def test_an_operators_link_joins_what_the_matcher_kept_apart_and_survives_reruns(migrated) -> None:
    from pony_tasks.works.link import record_operator_decision

    a, b = _store(migrated, _save(_artwork(1), "PNG")), _store(migrated, _save(_artwork(2), "PNG"))
    run_works(migrated)
    assert _works(migrated)[a] != _works(migrated)[b]
    with connect(migrated) as conn:
        record_operator_decision(conn, a, b, "duplicate", "the same commission, redrawn by the artist")
    run_works(migrated)
    run_works(migrated)
    assert _works(migrated)[a] == _works(migrated)[b]


def _canonicals(settings) -> dict[int, str]:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT work_id, canonical_sha256 FROM work")
        return dict(cur.fetchall())


def test_an_incremental_run_links_what_a_full_run_links_and_leaves_no_empty_work(migrated) -> None:
    from pony_tasks.works.link import record_operator_decision

    originals = [_artwork(p) for p in range(5)]
    first = [_store(migrated, _save(im, "PNG")) for im in originals]
    copies = [_store(migrated, ALTERATIONS["jpeg q85"](im)) for im in originals]
    run_works(migrated)
    before, canonical_before = _works(migrated), _canonicals(migrated)
    late = [_store(migrated, ALTERATIONS["webp"](im)) for im in originals[:2]]  # join works 0 and 1
    fresh = [_store(migrated, _save(_artwork(50), "PNG")), _store(migrated, ALTERATIONS["resized"](_artwork(50)))]
    with connect(migrated) as conn:  # an operator merges works 3 and 4: one of them empties
        record_operator_decision(conn, first[3], first[4], "duplicate", "the same picture, redrawn")

    report = run_works(migrated, only_new=True)
    incremental, canonical = _works(migrated), _canonicals(migrated)
    assert [incremental[s] for s in late] == [before[s] for s in first[:2]]
    assert incremental[fresh[0]] == incremental[fresh[1]] not in before.values()
    assert incremental[first[3]] == incremental[first[4]] == incremental[copies[4]]
    assert set(canonical) == set(incremental.values()), "a work emptied by the merge is deleted, no other"
    assert canonical[before[first[2]]] == canonical_before[before[first[2]]]  # an untouched work stays as it was
    assert report.changed_images == len(late) + len(fresh) + 2  # the merged-away work's two images moved

    full = run_works(migrated)  # a full run finds nothing to change
    assert full.changed_images == 0 and _works(migrated) == incremental and _canonicals(migrated) == canonical


def test_a_first_build_checks_foreign_keys_once_and_links_as_row_by_row(migrated, monkeypatch, caplog) -> None:
    import logging

    import pony_tasks.works.link as link

    caplog.set_level(logging.INFO, logger="pony_tasks.works.link")

    originals = [_artwork(p) for p in range(4)]
    shas = [_store(migrated, _save(im, "PNG")) for im in originals]
    shas += [_store(migrated, ALTERATIONS["jpeg q85"](im)) for im in originals]
    run_works(migrated)  # a few images: keys checked row by row
    assert "foreign keys dropped" not in caplog.text
    row_by_row = _works(migrated)
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid IN ('work'::regclass, 'work_image'::regclass, 'work_pair'::regclass) "
                    "ORDER BY 1, 2")  # fmt: skip
        keys = cur.fetchall()
        cur.execute("SELECT sha_a, sha_b, verdict FROM work_pair ORDER BY 1, 2")
        pairs = cur.fetchall()
        assert len(pairs) >= len(originals)
        cur.execute("DELETE FROM work_image; DELETE FROM work; DELETE FROM work_pair")
    monkeypatch.setattr(link, "BULK_MEMBERSHIPS", 1)  # every image moves: the first build's way
    report = run_works(migrated)
    assert "foreign keys dropped and checked again" in caplog.text
    assert "pair foreign keys dropped and checked again" in caplog.text
    assert report.changed_images == len(shas)
    bulk = _works(migrated)
    assert {frozenset(s for s in bulk if bulk[s] == w) for w in bulk.values()} == {
        frozenset(s for s in row_by_row if row_by_row[s] == w) for w in row_by_row.values()}
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE conrelid IN ('work'::regclass, 'work_image'::regclass, 'work_pair'::regclass) "
                    "ORDER BY 1, 2")  # fmt: skip
        assert cur.fetchall() == keys
        cur.execute("SELECT sha_a, sha_b, verdict FROM work_pair ORDER BY 1, 2")
        assert cur.fetchall() == pairs


def test_settled_groups_are_the_groups_that_are_exactly_one_work() -> None:
    import numpy as np

    from pony_tasks.works.link import settled_groups

    # images:        0  1  2  3  4  5  6  7
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 4])
    current = np.array([7, 7, 8, 9, 5, 6, -1, 4])  # group 1 spans two works, group 3 holds a new image
    canonical = np.array([1, 0, 1, 1, 0, 1, 0, 0], bool)  # works 5 and 4 (groups 2, 4) lost their canonical image
    assert settled_groups(labels, current, canonical, 5).tolist() == [True, False, False, False, False]
    current[4], canonical[4] = 7, True  # image 4 joins work 7 while group 0 holds the rest: work 7 is split
    assert settled_groups(labels, current, canonical, 5).tolist() == [False, False, False, False, False]
    assert settled_groups(labels, np.full(8, -1), np.zeros(8, bool), 5).tolist() == [False] * 5


def test_the_works_suite_checks_every_work(migrated) -> None:
    from pony_tasks.quality.checks import run_check

    for picture in range(3):
        original = _artwork(picture)
        _store(migrated, _save(original, "PNG"))
        _store(migrated, ALTERATIONS["webp"](original))
    run_works(migrated)
    report = run_check("works", settings=migrated)
    assert report.rows_checked == 3 and report.outcome == "warnings"  # every image merged: the share is 1.0 > 0.5
    assert [f.expectation for f in report.warnings] == ["expect_column_mean_to_be_between"]


def test_a_sudden_jump_in_the_merge_rate_warns(migrated) -> None:
    from pony_tasks.quality.checks import run_check

    originals = [_artwork(picture) for picture in range(10)]
    for original in originals:
        _store(migrated, _save(original, "PNG"))
    _store(migrated, ALTERATIONS["webp"](originals[0]))  # one work of two images among ten: share 0.1
    run_works(migrated)
    assert run_check("works", settings=migrated).outcome == "passed", "the first run has nothing to compare with"
    run_works(migrated)
    steady = run_check("works", settings=migrated)
    assert steady.outcome == "passed", [f.expectation for f in steady.warnings]
    for original in originals[1:4]:  # three more pictures re-posted: 4 of 10 works merged
        _store(migrated, ALTERATIONS["jpeg q85"](original))
    run_works(migrated, only_new=True)
    jumped = run_check("works", settings=migrated)
    assert jumped.outcome == "warnings"
    assert [(f.expectation, f.column) for f in jumped.warnings] == [
        ("expect_column_mean_to_be_between", "merged_share_change")], jumped.warnings


def test_the_report_draws_merged_works_and_near_misses(migrated, tmp_path) -> None:
    from pony_tasks.reports.contact_sheet import LABEL, THUMB
    from pony_tasks.storage import open_store
    from pony_tasks.works.report import contact_sheet, summarise

    store = open_store(settings=migrated)
    for picture in range(2):
        original = _artwork(picture)
        for data in (_save(original, "PNG"), ALTERATIONS["jpeg q85"](original)):
            sha = _store(migrated, data)
            store.put_bytes(f"images/{sha}", data)
    swapped = _save(Image.merge("RGB", _artwork(0).split()[::-1]), "PNG")  # a near miss: colours differ
    store.put_bytes(f"images/{_store(migrated, swapped)}", swapped)
    run_works(migrated)
    with connect(migrated) as conn:
        summary = summarise(conn)
        png = contact_sheet(conn, store)
    assert (summary.images, summary.works, summary.multi_image_works) == (5, 3, 2)
    assert summary.verdicts.get("distinct", 0) >= 1 and "40.0%" not in summary.text()
    (tmp_path / "contact-sheet.png").write_bytes(png)  # for a person debugging a failure
    sheet = Image.open(io.BytesIO(png))
    rows = (sheet.height - 24) // (THUMB + LABEL + 4)
    assert rows == 2 + summary.verdicts["distinct"]  # two merged works, then each near miss


def _post(settings, site: str, post_id: int, sha: str, tags: list[str], artists: list[str] | None) -> None:
    import json

    groups = {} if artists is None else {"artist": artists}
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO booru_post (site, post_id, rating, tags, tag_groups) VALUES (%s, %s, 'general', %s, "
                    "%s)", (site, post_id, tags, json.dumps(groups)))  # fmt: skip
        cur.execute("INSERT INTO booru_post_image (site, post_id, sha256) VALUES (%s, %s, %s)", (site, post_id, sha))


def test_a_copy_credited_to_another_artist_stays_apart_also_on_gelbooru(migrated) -> None:
    """Danbooru files ``inkwell`` and ``sunbeam`` as artists; Gelbooru gives no tag types, so its posts credit the
    tags other sites file as artists. A re-encode whose Gelbooru post names sunbeam is another artist's picture;
    one that names inkwell is the same work."""
    original = _artwork(3)
    source = _store(migrated, _save(original, "PNG"))
    credited_other = _store(migrated, _save(original, "JPEG", quality=90))
    credited_same = _store(migrated, _save(original, "JPEG", quality=70))
    other_picture = _store(migrated, _save(_artwork(4), "PNG"))
    _post(migrated, "danbooru", 1, source, ["inkwell", "solo"], ["inkwell"])
    _post(migrated, "danbooru", 2, other_picture, ["sunbeam", "solo"], ["sunbeam"])
    _post(migrated, "gelbooru", 10, credited_other, ["sunbeam", "solo"], None)
    _post(migrated, "gelbooru", 11, credited_same, ["inkwell", "solo"], None)
    run_works(migrated)
    works = _works(migrated)
    assert works[credited_same] == works[source] != works[credited_other]
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT verdict, evidence FROM work_pair WHERE %s IN (sha_a, sha_b) AND %s IN (sha_a, sha_b)",
                    (source, credited_other))  # fmt: skip
        verdict, evidence = cur.fetchone()
    assert verdict == "distinct" and any(r.startswith("credited to other artists") and "sunbeam" in r and "inkwell" in r
                                         for r in evidence["reasons"]), evidence  # fmt: skip


def test_the_clean_copy_is_canonical_when_a_signed_copy_has_the_same_size_and_format(migrated) -> None:
    """Issue 27: a re-post with a signature or watermark at the same size and format (more bytes: the mark adds
    content) must not become the work's canonical image while the clean copy is there."""
    clean, signed = set(), set()
    for picture in range(8):
        original = _artwork(picture)
        clean.add(_store(migrated, _save(original, "PNG")))
        signed.add(_store(migrated, _save(_signed(original), "PNG")))
    report = run_works(migrated)
    assert report.multi_image_works == 8, report.summary()
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT canonical_sha256 FROM work")
        canonical = {row[0] for row in cur.fetchall()}
    assert canonical == clean and not canonical & signed
