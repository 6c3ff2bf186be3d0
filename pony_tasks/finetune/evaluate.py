"""``pony finetune eval``: do the quality tags control quality?

For each quality tag alone (``score_9`` … ``score_1``, each ``score_K_up`` alone, V6's full chain, no tag), the
fine-tuned model generates images for fixed prompts and seeds; the active aesthetic model (with its own CLIP
embedder) scores them. Reported: the mean score per tag, and the Spearman correlation between the tag's level (K)
and the image's score over every image with a level — near 1 when the tags steer quality, near 0 when the model
ignores them. V6's flaw shows as ``score_K`` alone doing little while the full chain works. A plot and the
numbers are stored under ``finetune/run-<id>/eval/`` and in ``finetune_eval``.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.storage import ObjectStore, open_store

DEFAULT_PROMPTS = ("source_pony, rating_safe, pony, smiling, meadow", "source_anime, rating_safe, 1girl, sitting",
                   "source_furry, rating_safe, anthro, fox, forest")  # fmt: skip
V6_CHAIN = "score_9, score_8_up, score_7_up, score_6_up, score_5_up, score_4_up"


def prompt_variants() -> list[tuple[str, str, int | None]]:
    """(label, tag text, level): each band tag alone, each ``_up`` tag alone, the V6 chain (level 9), no tag."""
    variants: list[tuple[str, str, int | None]] = [(f"score_{k}", f"score_{k}", k) for k in range(9, 0, -1)]
    variants += [(f"score_{k}_up", f"score_{k}_up", k) for k in range(8, 0, -1)]
    variants += [("v6 chain", V6_CHAIN, 9), ("no tag", "", None)]
    return variants


@dataclass
class TagEvaluation:
    run_id: int
    aesthetic_version_id: int
    results: list[dict] = field(default_factory=list)  # label, level, images, mean, std
    spearman: float | None = None
    plot_key: str = ""

    def describe(self) -> str:
        rows = [f"  {r['label']:<12} level {str(r['level']):>4}  mean score {r['mean']:.3f} ± {r['std']:.3f} "
                f"({r['images']} images)" for r in self.results]  # fmt: skip
        rho = "n/a" if self.spearman is None else f"{self.spearman:.3f}"
        return "\n".join([f"fine-tune run {self.run_id}, scored by aesthetic version {self.aesthetic_version_id}:",
                          *rows, f"Spearman(tag level, aesthetic score) = {rho}; plot at {self.plot_key}"])  # fmt: skip


def load_finetuned_pipeline(conn, store: ObjectStore, run_id: int, device: str):  # noqa: ANN001
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel

    with conn.cursor() as cur:
        cur.execute("SELECT base_model, method, weights_key, status FROM finetune_run WHERE run_id = %s", (run_id,))
        row = cur.fetchone()
    if row is None:
        raise LookupError(f"fine-tune run {run_id} does not exist (see `pony finetune runs`)")
    base, method, weights_key, status = row
    if status != "complete" or not weights_key:
        raise ValueError(f"fine-tune run {run_id} is {status}: only a complete run can be evaluated")
    if (Path(base) / "text_encoder_2").exists():
        pipe = StableDiffusionXLPipeline.from_pretrained(base)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(base, safety_checker=None)
    local = store.get_tree(weights_key, Path(tempfile.mkdtemp(prefix=f"pony-eval-{run_id}-")))
    if method == "lora":
        pipe.load_lora_weights(str(local))
    else:
        pipe.unet = UNet2DConditionModel.from_pretrained(local / "unet")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def evaluate_tags(
    run_id: int, *, settings: Settings | None = None, prompts: tuple[str, ...] = DEFAULT_PROMPTS,
    seeds: tuple[int, ...] = (0, 1), steps: int = 25, resolution: int = 512, device: str = "auto",
    show_progress: bool | None = None,
) -> TagEvaluation:  # fmt: skip
    import numpy as np
    import pandas as pd
    import torch

    from pony_tasks.aesthetic.head import predict
    from pony_tasks.aesthetic.registry import get_version, load_head
    from pony_tasks.embed.models import load_model, resolve_device
    from pony_tasks.progress import progress_bar

    settings = settings or get_settings()
    store = open_store(settings=settings)
    device = resolve_device(device)
    with connect(settings) as conn:
        version = get_version(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT name, pretrained FROM embedding_model WHERE model_id = %s", (version.embedding_model_id,)
            )
            model_name, pretrained = cur.fetchone()
        pipe = load_finetuned_pipeline(conn, store, run_id, device)
    embedder = load_model(model_name, pretrained, device=device, settings=settings)
    head = load_head(store, version)
    evaluation = TagEvaluation(run_id, version.version_id)
    levels, scores = [], []
    variants = prompt_variants()
    with progress_bar(show_progress, total=len(variants), desc="tag evaluation", unit="tag") as bar:
        for label, tag, level in variants:
            texts = [f"{tag}, {p}" if tag else p for p in prompts for _ in seeds]
            generators = [torch.Generator(device="cpu").manual_seed(seed) for _ in prompts for seed in seeds]
            images = pipe(texts, num_inference_steps=steps, height=resolution, width=resolution,
                          generator=generators, output_type="pil").images  # fmt: skip
            pixels = torch.stack([embedder.preprocess(image) for image in images]).to(device)
            with torch.no_grad():
                features = torch.nn.functional.normalize(embedder.model.encode_image(pixels).float(), dim=-1)
            values = predict(head, features.cpu()).numpy().astype(float).clip(0, 1)
            evaluation.results.append({"label": label, "tag": tag, "level": level, "images": len(values),
                                       "mean": float(values.mean()), "std": float(values.std())})  # fmt: skip
            if level is not None:
                levels += [level] * len(values)
                scores += values.tolist()
            bar.update(1)
    rho = pd.Series(levels).corr(pd.Series(scores), method="spearman") if len(set(levels)) > 1 else None
    evaluation.spearman = None if rho is None or np.isnan(rho) else float(rho)
    evaluation.plot_key = f"finetune/run-{run_id}/eval/tag-control.png"
    store.put_bytes(evaluation.plot_key, _plot(evaluation))
    store.put_bytes(f"finetune/run-{run_id}/eval/results.json", json.dumps(evaluation.__dict__, indent=1).encode())
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("""INSERT INTO finetune_eval (run_id, aesthetic_version_id, results, spearman, plot_key)
                       VALUES (%s, %s, %s, %s, %s)""",
                    (run_id, version.version_id, json.dumps(evaluation.results), evaluation.spearman,
                     evaluation.plot_key))  # fmt: skip
    return evaluation


def _plot(evaluation: TagEvaluation) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = evaluation.results
    figure, axis = plt.subplots(figsize=(11, 4.5))
    colours = ["#3b7dd8" if r["label"].endswith("_up") else "#d8703b" if r["label"].startswith("score_")
               else "#555555" for r in rows]  # fmt: skip
    axis.bar(range(len(rows)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows], color=colours, capsize=2)
    axis.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=60, ha="right")
    axis.set_ylabel("mean aesthetic score (0..1)")
    rho = "n/a" if evaluation.spearman is None else f"{evaluation.spearman:.2f}"
    axis.set_title(f"Do quality tags control quality? fine-tune run {evaluation.run_id}: Spearman(level, score) = "
                   f"{rho}\norange: score_K alone · blue: score_K_up alone · grey: V6 chain, no tag")  # fmt: skip
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()
