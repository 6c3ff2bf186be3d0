"""Training export of the active caption set: kohya folders and webdataset shards, with a manifest."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile

import pytest

from pony_tasks.captions.sets import regenerate
from pony_tasks.db import connect
from pony_tasks.export.dataset import export_dataset, iter_checksums
from pony_tasks.storage import open_store
from tests.captions.conftest import COUNT, IMAGE_BYTES, SHAS


@pytest.fixture
def captioned(scored):
    store = open_store(settings=scored)
    with connect(scored) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, storage_key FROM image")
            for sha, key in cur.fetchall():
                store.put_bytes(key, IMAGE_BYTES[SHAS.index(sha)])
        regenerate(conn, scheme="v7")
    return scored, store


def test_kohya_export_writes_captions_metadata_and_manifest(captioned) -> None:
    settings, store = captioned
    with connect(settings) as conn:
        result = export_dataset(conn, store, "k1", "kohya", min_band=8, ratings=["general", "explicit"])
        with conn.cursor() as cur:
            cur.execute("SELECT sha256, text FROM active_caption WHERE band >= 8")
            captions = dict(cur.fetchall())
    meta = json.loads(store.get_bytes("exports/k1/meta.json"))
    manifest = json.loads(store.get_bytes("exports/k1/manifest.json"))
    assert 0 < result.samples < len(captions), "ratings filter applied on top of the band"
    assert len(meta) == result.samples == manifest["samples"]
    for image_name, entry in meta.items():
        sha = image_name.split(".")[0]
        assert entry["caption"] == store.get_bytes(f"exports/k1/{sha}.txt").decode()
        assert entry["image_size"] == [512, 768]
        lines = entry["caption"].split("\n")
        assert len(lines) == 8, "v7: one pre-sampled line per variant"
        stored_fixed, _, stored_flexible = captions[sha].partition(" ||| ")
        for line in lines:  # each line: the stored caption with a subset of its score_K_up tags
            fixed, _, flexible = line.partition(" ||| ")
            assert fixed == stored_fixed and fixed.startswith("score_")
            kept, stored = flexible.split(", "), stored_flexible.split(", ")
            assert [t for t in stored if not t.endswith("_up")] == [t for t in kept if not t.endswith("_up")]
            assert set(kept) <= set(stored)
    assert manifest["scheme"] == "v7" and manifest["selection"]["min_band"] == 8
    checksums = dict(iter_checksums(store, "k1"))
    assert len(checksums) == manifest["files"] and manifest["checksums"]["sha256"] == hashlib.sha256(
        store.get_bytes("exports/k1/SHA256SUMS")).hexdigest()  # fmt: skip
    written = set(store.list("exports/k1/")) - {"exports/k1/SHA256SUMS", "exports/k1/manifest.json"}
    assert checksums.keys() == written
    for key, digest in checksums.items():
        assert hashlib.sha256(store.get_bytes(key)).hexdigest() == digest
    checked = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=store.root / "exports/k1",
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0 and checked.stdout.count(": OK") == len(checksums), checked.stderr


def test_webdataset_export_shards_by_size_with_complete_samples(captioned) -> None:
    settings, store = captioned
    with connect(settings) as conn:
        result = export_dataset(conn, store, "w1", "webdataset", shard_bytes=20_480)
    manifest = json.loads(store.get_bytes("exports/w1/manifest.json"))
    shards = sorted(k for k, _ in iter_checksums(store, "w1") if k.endswith(".tar"))
    assert result.samples == COUNT and len(shards) > 3 and manifest["image_format"] == "png"
    members: dict[str, set[str]] = {}
    for key in shards:
        data = store.get_bytes(key)
        assert len(data) <= 20_480, "the shard size counts headers, padding and every member"
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for name in tar.getnames():
                stem, extension = name.split(".", 1)
                members.setdefault(stem, set()).add(extension)
            sample = json.loads(tar.extractfile(next(n for n in tar.getnames() if n.endswith(".json"))).read())
            assert {"site", "post_id", "posts", "rating", "band", "caption_set", "width", "height", "aesthetic_score",
                    "percentile", "work"} <= set(sample)  # fmt: skip
    assert len(members) == COUNT and all(parts == {"png", "txt", "json"} for parts in members.values())


def test_export_needs_an_active_caption_set(scored) -> None:
    with connect(scored) as conn, pytest.raises(LookupError, match="captions regenerate"):
        export_dataset(conn, open_store(settings=scored), "x", "kohya")


def test_posts_the_site_deleted_leave_the_next_caption_set_and_every_export(captioned) -> None:
    settings, store = captioned
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.execute("""UPDATE booru_post SET deleted = true WHERE post_id <= 30
                           RETURNING (SELECT sha256 FROM booru_post_image i
                                      WHERE i.site = booru_post.site AND i.post_id = booru_post.post_id)""")
            gone = {row[0] for row in cur.fetchall()}
        exported = export_dataset(conn, store, "after-deletion", "kohya")  # the active set predates the deletions
        regenerate(conn, scheme="v7")
        with conn.cursor() as cur:
            cur.execute("SELECT sha256 FROM active_caption")
            captioned_now = {row[0] for row in cur.fetchall()}
    meta = json.loads(store.get_bytes("exports/after-deletion/meta.json"))
    assert len(gone) == 30 and exported.samples == len(meta) == COUNT - 30
    assert not gone & {name.split(".")[0] for name in meta}
    assert captioned_now and not gone & captioned_now and len(captioned_now) == COUNT - 30


def test_an_export_holds_one_sample_per_work(captioned) -> None:
    """Three captioned images linked into one work: only its canonical image is exported."""
    settings, store = captioned
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("SELECT sha256 FROM active_caption ORDER BY sha256 LIMIT 3")
        shas = [row[0] for row in cur.fetchall()]
        cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", (shas[1],))
        work_id = cur.fetchone()[0]
        for sha in shas:
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s)", (sha, work_id))
    with connect(settings) as conn:
        result = export_dataset(conn, store, "per-work", "kohya")
    meta = json.loads(store.get_bytes("exports/per-work/meta.json"))
    exported = {name.split(".")[0] for name in meta}
    assert result.samples == COUNT - 2 and shas[1] in exported and not exported & {shas[0], shas[2]}


def test_a_kohya_export_is_the_same_written_one_at_a_time_locally_or_many_at_once_to_s3(captioned, s3_settings) -> None:
    settings, local = captioned
    remote = open_store(settings=s3_settings)
    with local.deferred_sync():
        assert local.parallel_writes() == 1, "the local store inside deferred_sync: no thread pool"
    assert remote.parallel_writes() > 1
    for key in local.list("images/"):
        remote.put_bytes(key, local.get_bytes(key))
    with connect(settings) as conn:
        one = export_dataset(conn, local, "same", "kohya", min_band=7)
        many = export_dataset(conn, remote, "same", "kohya", min_band=7)
    assert one.samples == many.samples > 1
    one_files, many_files = dict(iter_checksums(local, "same")), dict(iter_checksums(remote, "same"))
    assert one.file_count == many.file_count == len(one_files) and one_files.keys() == many_files.keys()
    differing = {key for key in one_files if one_files[key] != many_files[key]}
    # only the dataset configs' image_dir differs (the local folder; "." in a bucket)
    assert differing == {"exports/same/dataset.toml", "exports/same/dataset-finetune.toml"}


def test_filters_and_metadata_use_the_merged_values_the_caption_was_written_from(captioned) -> None:
    """A work of a general post's image (canonical) and an explicit post's: its caption says rating_explicit, so a
    --rating general export leaves it out, and every sample's rating and posts are the work's."""
    settings, store = captioned
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.execute("""SELECT i.sha256, p.rating FROM booru_post_image i JOIN booru_post p USING (site, post_id)
                           WHERE p.post_id IN (1, 2) ORDER BY p.post_id""")  # fmt: skip
            (general, rating_1), (explicit, rating_2) = cur.fetchall()
            assert (rating_1, rating_2) == ("general", "explicit")
            cur.execute("INSERT INTO work (canonical_sha256) VALUES (%s) RETURNING work_id", (general,))
            work_id = cur.fetchone()[0]
            cur.execute("INSERT INTO work_image (sha256, work_id) VALUES (%s, %s), (%s, %s)",
                        (general, work_id, explicit, work_id))  # fmt: skip
        regenerate(conn, scheme="v7")
        safe = export_dataset(conn, store, "safe", "webdataset", ratings=["general"])
        everything = export_dataset(conn, store, "all", "webdataset")
    assert 0 < safe.samples < everything.samples == COUNT - 1
    for name in ("safe", "all"):
        for key in (k for k, _ in iter_checksums(store, name) if k.endswith(".tar")):
            with tarfile.open(fileobj=io.BytesIO(store.get_bytes(key))) as tar:
                for member in (n for n in tar.getnames() if n.endswith(".json")):
                    meta = json.loads(tar.extractfile(member).read())
                    caption = tar.extractfile(member.replace(".json", ".txt")).read().decode().split(", ")
                    expected = {"general": "rating_safe", "sensitive": "rating_safe",
                                "explicit": "rating_explicit"}[meta["rating"]]  # fmt: skip
                    assert expected in caption, (meta["rating"], caption)
                    if name == "safe":
                        assert meta["rating"] == "general" and not {"rating_explicit", "rating_questionable"} & set(
                            caption)  # fmt: skip
                    if meta["sha256"] == general:
                        assert name == "all" and meta["rating"] == "explicit"
                        assert [p["post_id"] for p in meta["posts"]] == [1, 2], "the work's posts"


def test_webdataset_auto_key_is_the_selections_own_format(captioned) -> None:
    """``auto``: the band's images sharing one extension give it at once; mixed, the key is the selection's own (the
    e621 posts' files are JPEG keys here, Danbooru's PNG) — PNG only when the selection itself mixes them."""
    from PIL import Image

    settings, store = captioned
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 90)).save(buffer, "JPEG")
    jpeg = buffer.getvalue()
    with connect(settings) as conn:
        with conn.cursor() as cur:
            cur.execute("""SELECT i.sha256, i.storage_key FROM image i JOIN booru_post_image b USING (sha256)
                           WHERE b.site = 'e621'""")  # fmt: skip
            for sha, key in cur.fetchall():
                store.put_bytes(key.rsplit(".", 1)[0] + ".jpg", jpeg)  # decoded when the key is PNG
                cur.execute(
                    "UPDATE image SET storage_key = %s, format = 'JPEG' WHERE sha256 = %s",
                    (key.rsplit(".", 1)[0] + ".jpg", sha),
                )
        conn.commit()
        keys = {}
        for name, sites in (("mixed", None), ("e621", ["e621"]), ("danbooru", ["danbooru"])):
            export_dataset(conn, store, f"wk-{name}", "webdataset", sites=sites)
            keys[name] = json.loads(store.get_bytes(f"exports/wk-{name}/manifest.json"))["image_format"]
            members = [n for k in store.list(f"exports/wk-{name}/") if k.endswith(".tar")
                       for n in tarfile.open(fileobj=io.BytesIO(store.get_bytes(k))).getnames()]  # fmt: skip
            assert {n.rsplit(".", 1)[1] for n in members} == {keys[name], "txt", "json"}
        with conn.cursor() as cur:
            cur.execute(
                "UPDATE image SET storage_key = regexp_replace(storage_key, '[.]png$', '.jpg'), format = 'JPEG'"
            )
            cur.execute("SELECT storage_key FROM image")
            for (key,) in cur.fetchall():
                if not store.exists(key):
                    store.put_bytes(key, store.get_bytes(key.rsplit(".", 1)[0] + ".png"))
        conn.commit()
        export_dataset(conn, store, "wk-all", "webdataset")
        keys["all"] = json.loads(store.get_bytes("exports/wk-all/manifest.json"))["image_format"]
    assert keys == {"mixed": "png", "e621": "jpg", "danbooru": "png", "all": "jpg"}
