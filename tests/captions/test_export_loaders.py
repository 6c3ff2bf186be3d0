"""Exports read by the loaders trainers use, unchanged: kohya sd-scripts' own caption code and config schema, the
``webdataset`` package, HF ``datasets`` (webdataset and Parquet builders), and by another user (file modes)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import stat
import tomllib
from collections import Counter
from pathlib import Path

import pytest
import toml
from PIL import Image

from pony_tasks.captions.sets import regenerate
from pony_tasks.db import connect
from pony_tasks.export.dataset import export_dataset
from pony_tasks.storage import open_store
from tests.captions.conftest import COUNT
from tests.fixtures.sd_scripts import kohya_args, kohya_dataset

SMALL = COUNT // 30  # images 48×72 (every 30th): under kohya's smallest bucket side


@pytest.fixture
def mixed_formats(scored):
    """Real images, half PNG and half JPEG, of different sizes (every 30th smaller than 64 px on a side); captions
    of the active set (v7)."""
    store = open_store(settings=scored)
    with connect(scored) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT sha256 FROM image ORDER BY sha256")
            for index, (sha,) in enumerate(cur.fetchall()):
                rng = random.Random(index)
                width, height = (48, 72) if index % 30 == 0 else (64 + index % 9, 64 + index % 5)
                image = Image.new("RGB", (width, height), tuple(rng.randrange(256) for _ in range(3)))
                fmt, ext = ("PNG", "png") if index % 2 else ("JPEG", "jpg")
                out = io.BytesIO()
                image.save(out, fmt)
                key = f"images/{sha}.{ext}"
                store.put_bytes(key, out.getvalue())
                cur.execute("UPDATE image SET storage_key = %s, format = %s, width = %s, height = %s, byte_size = %s "
                            "WHERE sha256 = %s", (key, fmt, width, height, len(out.getvalue()), sha))  # fmt: skip
        regenerate(conn, scheme="v7")
    return scored, store


def _export(settings, store, fmt: str, **options) -> tuple[Path, dict]:
    with connect(settings) as conn:
        export_dataset(conn, store, f"t-{fmt}", fmt, **options)
    root = store.root / f"exports/t-{fmt}"
    return root, json.loads((root / "manifest.json").read_text())


def test_kohya_reads_the_export_with_its_own_config_and_caption_code(mixed_formats) -> None:
    settings, store = mixed_formats
    root, manifest = _export(settings, store, "kohya")
    configs = {name: (root / name).read_text() for name in ("dataset.toml", "dataset-finetune.toml")}
    for text in configs.values():
        assert toml.loads(text) == tomllib.loads(text)
        config = toml.loads(text)
        assert set(config["general"]) <= kohya_dataset.GENERAL_KEYS
        for dataset in config["datasets"]:
            assert set(dataset) - {"subsets"} <= kohya_dataset.DATASET_KEYS
            for subset in dataset["subsets"]:
                assert set(subset) <= kohya_dataset.SUBSET_KEYS and Path(subset["image_dir"]) == root
    config = toml.loads(configs["dataset.toml"])
    subset = kohya_dataset.subset_from_config(config["general"], config["datasets"][0], config["datasets"][0]
                                              ["subsets"][0])  # fmt: skip
    finetune_subset = toml.loads(configs["dataset-finetune.toml"])["datasets"][0]["subsets"][0]
    assert finetune_subset["metadata_file"] == str(root / "meta.json") and subset.shuffle_caption
    images = sorted(p for p in root.iterdir() if p.suffix in (".png", ".jpg"))
    assert len(images) == manifest["samples"] == COUNT - SMALL, "images under the smallest bucket left out"
    assert manifest["left_out_too_small"] == {"images": SMALL, "min_side": 64}
    assert f"{SMALL} images smaller than 64 px on a side were left out" in (root / "README.md").read_text()
    assert all(min(Image.open(p).size) >= 64 for p in images)
    random.seed(5)
    checked = 0
    for image in images[::7]:  # every band
        caption = kohya_dataset.read_caption(str(image), subset.caption_extension, subset.enable_wildcard)
        stored = json.loads((root / "meta.json").read_text())[image.name]["caption"]
        assert caption == stored and ("\n" in caption or "_up" not in caption), "v7: lines, unless band 1"
        band = caption.split(",")[0]
        ups = sorted({t for line in caption.split("\n") for t in line.replace(" ||| ", ", ").split(", ")
                      if t.endswith("_up")})  # fmt: skip
        checked += len(ups) >= 2
        draws = [kohya_dataset.process_caption(subset, caption).split(", ") for _ in range(400)]
        assert all(d[0] == band and "|||" not in ", ".join(d) for d in draws), "band tag first, separator gone"
        lines = [set(line.replace(" ||| ", ", ").split(", ")) for line in caption.split("\n")]
        for up in ups:  # kohya picks a line uniformly: each score_K_up as often as the lines carry it
            share = sum(up in d for d in draws) / len(draws)
            assert abs(share - sum(up in line for line in lines) / len(lines)) < 0.1, (up, share)
    assert checked >= 10


def test_kohya_lines_draw_each_up_tag_independently_over_many_images(mixed_formats) -> None:
    """Across all caption lines of the export: P(score_K_up) ≈ 0.5 and P(both) ≈ P(one)·P(other)."""
    settings, store = mixed_formats
    root, _ = _export(settings, store, "kohya", variants=16)
    lines = [line for path in root.glob("*.txt") for line in path.read_text().split("\n")]
    nine = [set(line.replace(" ||| ", ", ").split(", ")) for line in lines if line.startswith("score_9,")]
    assert len(nine) >= 16 * 20
    p8, p5 = (sum(f"score_{k}_up" in tags for tags in nine) / len(nine) for k in (8, 5))
    both = sum({"score_8_up", "score_5_up"} <= tags for tags in nine) / len(nine)
    assert 0.4 < p8 < 0.6 and 0.4 < p5 < 0.6 and abs(both - p8 * p5) < 0.06


def test_hf_datasets_and_webdataset_load_the_webdataset_export(mixed_formats, tmp_path, monkeypatch) -> None:
    import datasets
    import webdataset as wds

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings, store = mixed_formats
    root, manifest = _export(settings, store, "webdataset", shard_bytes=40_960)
    shards = sorted(str(p) for p in root.glob("shard-*.tar"))
    assert len(shards) > 1 and manifest["image_format"] == "png", "mixed formats: one key, lossless PNG"
    loaded = datasets.load_dataset("webdataset", data_files={"train": shards}, split="train", cache_dir=str(tmp_path))
    assert len(loaded) == COUNT and set(loaded.column_names) >= {"png", "txt", "json"}
    row = loaded[0]
    assert row["png"].size == (row["json"]["width"], row["json"]["height"])
    assert all("|||" not in r["txt"] and r["txt"] in r["json"]["captions"] for r in loaded), "one ready line each"
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert len(samples) == COUNT and all(s["png"].size == (s["json"]["width"], s["json"]["height"]) for s in samples)
    jpeg = next(s for s in samples if s["json"]["format"] == "JPEG")
    with Image.open(io.BytesIO(store.get_bytes(f"images/{jpeg['__key__']}.jpg"))) as original:
        assert jpeg["png"].tobytes() == original.convert("RGB").tobytes(), "re-encoded without loss"


def test_hf_datasets_loads_the_parquet_export_with_decoded_images(mixed_formats, tmp_path, monkeypatch) -> None:
    import datasets
    import pyarrow.parquet as pq

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings, store = mixed_formats
    root, manifest = _export(settings, store, "parquet", shard_bytes=5_000)
    files = sorted(str(p) for p in (root / "data").glob("train-*.parquet"))
    assert len(files) > 1 and manifest["samples"] == COUNT
    loaded = datasets.load_dataset("parquet", data_files={"train": files}, split="train", cache_dir=str(tmp_path))
    assert isinstance(loaded.features["image"], datasets.Image) and len(loaded) == COUNT
    row = loaded[0]
    assert row["image"].size == (row["width"], row["height"]) and row["sites"] and len(row["sites"]) == len(
        row["post_ids"])  # fmt: skip
    assert pq.read_table(files[0]).num_rows > 0  # plain pyarrow (Spark, pandas) reads it too


def test_exported_files_are_readable_by_others_and_carry_a_card_and_styles(mixed_formats) -> None:
    settings, store = mixed_formats
    root, manifest = _export(settings, store, "kohya")
    modes = Counter(stat.S_IMODE(p.stat().st_mode) & 0o044 for p in root.rglob("*") if p.is_file())
    assert set(modes) == {0o044}, "group and others can read every file (umask 022)"
    card = (root / "README.md").read_text()
    assert card.startswith("---\n") and f"{COUNT - SMALL} samples" in card and "| band | samples |" in card
    assert "score_9" in card and "pony finetune eval" in card, "how to prompt; control not measured yet"
    styles = list(csv.DictReader(io.StringIO((root / "styles.csv").read_text())))
    assert [s["name"] for s in styles][:2] == ["Pony V7 score_9", "Pony V7 score_8_up"] and len(styles) == 9
    assert all("{prompt}" in s["prompt"] for s in styles)
    prefixes = (root / "quality-prefixes.txt").read_text().splitlines()
    assert prefixes[0] == "score_9, " and len(prefixes) == 9


@pytest.mark.parametrize(("limit", "expected"), [(75, None), (120, 150), (150, 150), (225, 225)])
def test_the_trainer_command_is_accepted_by_sd_scripts_parser(mixed_formats, limit, expected) -> None:
    settings, store = mixed_formats
    with connect(settings) as conn:
        regenerate(conn, scheme="v7", token_limit=limit)
    root, _ = _export(settings, store, "kohya")
    for name in ("dataset.toml", "dataset-finetune.toml"):
        header = [line for line in (root / name).read_text().splitlines() if "accelerate launch" in line]
        assert len(header) == 1
        options = kohya_args.parse_command(header[0].lstrip("# "))
        assert options.max_token_length == expected and options.dataset_config.name == name
    card = (root / "README.md").read_text()
    command = next(line for line in card.splitlines() if line.startswith("Train with: `"))
    assert kohya_args.parse_command(command.split("`")[1].rstrip(" …")).max_token_length == expected
    with pytest.raises(argparse.ArgumentError, match=r"invalid choice: 75 \(choose from None, 150, 225\)"):
        kohya_args.parse_command("accelerate launch sdxl_train_network.py --max_token_length 75")  # what it was


def test_plain_captions_of_every_format_need_no_shuffling_and_are_reproducible(mixed_formats, tmp_path,
                                                                               monkeypatch) -> None:  # fmt: skip
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings, store = mixed_formats
    root, manifest = _export(settings, store, "imagefolder", variants=4)
    loaded = datasets.load_dataset("imagefolder", data_dir=str(root), split="train", cache_dir=str(tmp_path))
    assert len(loaded) == manifest["samples"] == COUNT and isinstance(loaded.features["image"], datasets.Image)
    assert loaded[0]["image"].size == (loaded[0]["width"], loaded[0]["height"])
    multi = 0
    for row in loaded:
        assert "|||" not in row["text"] and row["text"] in row["captions"]
        assert row["text"].split(", ")[0] == f"score_{row['band']}", "the fixed part leads, in order"
        multi += len(row["captions"]) == 4
        assert len(row["captions"]) in (1, 4)
    assert multi > COUNT // 2, "V7 bands above 1: one line per draw"
    again, _ = _export(settings, store, "imagefolder", variants=4)
    assert (again / "metadata.jsonl").read_bytes() == (root / "metadata.jsonl").read_bytes(), "seeded"
    parquet, _ = _export(settings, store, "parquet", variants=4)
    import pyarrow.parquet as pq

    table = pq.read_table(sorted((parquet / "data").glob("*.parquet"))[0]).to_pylist()
    assert all("|||" not in r["text"] and r["text"] in r["captions"] for r in table)
    by_sha = {json.loads(line)["sha256"]: json.loads(line) for line in (root / "metadata.jsonl").read_text().split(
        "\n") if line}  # fmt: skip
    assert all(by_sha[r["sha256"]]["captions"] == r["captions"] for r in table), "every format the same lines"
