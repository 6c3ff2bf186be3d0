"""Fine-tunes on a tiny model family built from configs: finite loss, checkpoints, resume equals uninterrupted."""

from __future__ import annotations

import pytest
import torch

from pony_tasks.db import connect
from pony_tasks.finetune.data import DatasetError, load_export, make_buckets, nearest_bucket
from pony_tasks.finetune.train import FinetuneConfig, run_finetune
from pony_tasks.storage import open_store
from tests.finetune.conftest import write_export

CONFIG = dict(steps=4, batch_size=2, resolution=32, checkpoint_every=2, learning_rate=1e-3)


def _unet_weights(settings, run_id):
    from safetensors.torch import load

    store = open_store(settings=settings)
    keys = [k for k in store.list(f"finetune/run-{run_id}/final/") if k.endswith(".safetensors")]
    assert keys, f"no final weights for run {run_id}"
    return load(store.get_bytes(keys[0]))


def test_buckets_cover_aspect_ratios_within_the_pixel_budget() -> None:
    buckets = make_buckets(1024)
    assert (1024, 1024) in buckets and all(w * h <= 1024 * 1024 and w % 128 == 0 or w % 64 == 0 for w, h in buckets)
    assert nearest_bucket(1600, 900, buckets)[0] > nearest_bucket(1600, 900, buckets)[1]
    assert nearest_bucket(900, 1600, buckets)[0] < nearest_bucket(900, 1600, buckets)[1]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_few_cpu_steps_train_with_finite_loss_and_are_recorded(migrated, tiny_base, method) -> None:
    write_export(migrated)
    result = run_finetune(tiny_base, "tiny", FinetuneConfig(method=method, **CONFIG), settings=migrated)
    assert result.steps_done == 4 and len(result.losses) == 4 and all(map(torch.isfinite, torch.tensor(result.losses)))
    assert result.latents_encoded == 12
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, steps_done, method, last_checkpoint, weights_key, dataset FROM finetune_run")
        status, steps, stored_method, checkpoint, weights, dataset = cur.fetchone()
    assert (status, steps, stored_method, dataset) == ("complete", 4, method, "tiny")
    assert checkpoint.endswith("checkpoint-0000004") and weights == f"finetune/run-{result.run_id}/final"
    keys = list(open_store(settings=migrated).list(f"finetune/run-{result.run_id}/"))
    assert any("checkpoint-0000002/" in k for k in keys) and any("/final/" in k for k in keys)
    if method == "lora":  # the saved LoRA loads into the base pipeline the way diffusers users load it
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(tiny_base)
        pipe.load_lora_weights(_unet_weights(migrated, result.run_id))
        assert any("lora" in name for name, _ in pipe.unet.named_parameters())


def test_an_interrupted_run_resumes_to_the_same_weights_as_an_uninterrupted_one(migrated, tiny_base) -> None:
    write_export(migrated)
    config = FinetuneConfig(method="full", **CONFIG)
    straight = run_finetune(tiny_base, "tiny", config, settings=migrated)
    first = run_finetune(tiny_base, "tiny", config, settings=migrated, stop_after=2)
    assert first.steps_done == 2
    with connect(migrated) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, steps_done FROM finetune_run WHERE run_id = %s", (first.run_id,))
        assert cur.fetchone() == ("running", 2)
    resumed = run_finetune(tiny_base, "tiny", settings=migrated, resume_run=first.run_id)
    assert resumed.resumed_from == 2 and resumed.steps_done == 4 and resumed.latents_encoded == 0
    assert resumed.losses == straight.losses[2:]
    a, b = _unet_weights(migrated, straight.run_id), _unet_weights(migrated, resumed.run_id)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="already complete"):
        run_finetune(tiny_base, "tiny", settings=migrated, resume_run=first.run_id)


def test_bad_inputs_are_refused_with_what_to_do(migrated, tiny_base, tmp_path) -> None:
    with pytest.raises(DatasetError, match="pony export dataset"):
        load_export(open_store(settings=migrated), "missing")
    write_export(migrated)
    with pytest.raises(FileNotFoundError, match="not a diffusers model directory"):
        run_finetune(tmp_path, "tiny", FinetuneConfig(**CONFIG), settings=migrated)
    with pytest.raises(ValueError, match="method"):
        FinetuneConfig(method="dreambooth")


def test_the_sdxl_family_trains_with_pooled_embeddings_and_time_ids(migrated, tmp_path) -> None:
    from pony_tasks.finetune.tiny import build_tiny_pipeline

    base = build_tiny_pipeline(tmp_path / "tiny-sdxl", family="sdxl")
    write_export(migrated, "xl")
    result = run_finetune(base, "xl", FinetuneConfig(method="lora", **CONFIG), settings=migrated)
    assert result.steps_done == 4 and all(map(torch.isfinite, torch.tensor(result.losses)))
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(base)
    pipe.load_lora_weights(_unet_weights(migrated, result.run_id))
    image = pipe("score_9, pony", num_inference_steps=2, height=32, width=32,
                 generator=torch.Generator().manual_seed(0)).images[0]  # fmt: skip
    assert image.size == (32, 32)
