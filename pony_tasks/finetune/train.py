"""``pony finetune run``: fine-tune a diffusers UNet (SD 1.x or SDXL family) on a kohya export, through accelerate.

- Components come from a diffusers model directory (``--base``): ``unet``, ``vae``, ``text_encoder`` + ``tokenizer``
  (SDXL also ``text_encoder_2`` + ``tokenizer_2``: pooled embeddings and size/crop time ids are added), ``scheduler``.
- ``method``: ``lora`` (peft adapters on the attention projections; only they train) or ``full`` (the whole UNet).
- VAE latents are cached once (:mod:`.data`); batches come from one aspect-ratio bucket at a time.
- Captions are re-sampled every step by the captions sampler (independent ``score_K_up`` tokens, shuffle), seeded.
- accelerate handles devices, mixed precision (bf16 on CUDA, none on CPU), gradient accumulation and multi-GPU
  (``accelerate launch --config_file … -m pony_tasks finetune run …``).
- Every ``checkpoint_every`` steps the accelerate state goes to ``finetune/run-<id>/checkpoint-<step>/`` in the
  object store; ``--resume RUN`` continues from the newest one. Per-step randomness (batch choice, caption sampling,
  noise, timesteps) is derived from (seed, step), so a resumed run takes the same steps as an uninterrupted one.
- The run (dataset manifest, caption set, aesthetic version, hyper-parameters, status, loss) is a ``finetune_run`` row.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pony_tasks.config import Settings, get_settings
from pony_tasks.db import connect
from pony_tasks.errors import PermanentError
from pony_tasks.finetune.data import CachedLatent, cache_latents, load_export
from pony_tasks.storage import ObjectStore, open_store


@dataclass(frozen=True)
class FinetuneConfig:
    method: str = "lora"
    steps: int = 100
    batch_size: int = 4
    learning_rate: float = 1e-4
    lora_rank: int = 8
    resolution: int = 512
    seed: int = 0
    checkpoint_every: int = 50
    gradient_accumulation: int = 1
    keep_probability: float = 0.5  # each independent score_K_up token kept with this probability per step
    mixed_precision: str = "auto"  # auto: bf16 on CUDA, no on CPU

    def __post_init__(self) -> None:
        if self.method not in ("lora", "full"):
            raise ValueError(f"method must be lora or full, got {self.method!r}")
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size and checkpoint_every must be ≥ 1")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be within (0, 1), got {self.learning_rate}")


@dataclass
class FinetuneResult:
    run_id: int
    steps_done: int
    resumed_from: int
    latents_encoded: int
    samples: int
    losses: list[float] = field(default_factory=list)
    weights_key: str | None = None

    def summary(self) -> str:
        last = f"{self.losses[-1]:.4f}" if self.losses else "n/a"
        resumed = f", resumed at step {self.resumed_from}" if self.resumed_from else ""
        return (f"fine-tune run {self.run_id}: {self.steps_done} steps on {self.samples} samples{resumed}; "
                f"{self.latents_encoded} latents encoded (the rest cached); last loss {last}; weights at "
                f"{self.weights_key}")  # fmt: skip


class NonFiniteLoss(PermanentError, RuntimeError):
    pass


def _components(base: Path):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    if not (base / "model_index.json").exists():
        raise FileNotFoundError(f"{base} is not a diffusers model directory (no model_index.json)")
    parts = {
        "unet": UNet2DConditionModel.from_pretrained(base, subfolder="unet"),
        "vae": AutoencoderKL.from_pretrained(base, subfolder="vae"),
        "text_encoder": CLIPTextModel.from_pretrained(base, subfolder="text_encoder"),
        "tokenizer": AutoTokenizer.from_pretrained(base, subfolder="tokenizer"),
        "scheduler": DDPMScheduler.from_pretrained(base, subfolder="scheduler"),
    }
    if (base / "text_encoder_2").exists():  # SDXL family
        parts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2")
        parts["tokenizer_2"] = AutoTokenizer.from_pretrained(base, subfolder="tokenizer_2")
    return parts


def encode_prompts(parts: dict, prompts: list[str], sizes: list[tuple[int, int]], device):
    """(encoder_hidden_states, added_cond_kwargs or None) for SD 1.x or SDXL."""
    import torch

    def ids(tokenizer):
        return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(device)  # fmt: skip

    with torch.no_grad():
        if "text_encoder_2" not in parts:
            return parts["text_encoder"](ids(parts["tokenizer"]))[0], None
        first = parts["text_encoder"](ids(parts["tokenizer"]), output_hidden_states=True)
        second = parts["text_encoder_2"](ids(parts["tokenizer_2"]), output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        time_ids = torch.tensor([[h, w, 0, 0, h, w] for w, h in sizes], device=device, dtype=hidden.dtype)
        return hidden, {"text_embeds": second.text_embeds, "time_ids": time_ids}


def _register(conn, base: str, export, config: FinetuneConfig) -> int:
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO finetune_run (base_model, dataset, manifest_sha256, caption_set_id, aesthetic_version_id,
                   method, hyperparameters) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING run_id""",
            (base, export.name, export.manifest_sha256, export.manifest.get("caption_set"),
             export.manifest.get("aesthetic_version"), config.method, json.dumps(asdict(config))),
        )  # fmt: skip
        return cur.fetchone()[0]


def run_finetune(
    base: Path, dataset: str, config: FinetuneConfig | None = None, *, settings: Settings | None = None,
    resume_run: int | None = None, stop_after: int | None = None, show_progress: bool | None = None,
) -> FinetuneResult:  # fmt: skip
    """Train (or resume ``resume_run``); ``stop_after`` ends this invocation after that many steps with a
    checkpoint, leaving the run resumable (a time-boxed GPU slot; also how tests interrupt a run)."""
    import torch
    from accelerate import Accelerator

    from pony_tasks.captions.render import sample_caption_text
    from pony_tasks.progress import progress_bar

    settings = settings or get_settings()
    store = open_store(settings=settings)
    with connect(settings) as conn:
        if resume_run is not None:
            with conn.cursor() as cur:
                cur.execute("SELECT hyperparameters, dataset, base_model, steps_done, last_checkpoint, status "
                            "FROM finetune_run WHERE run_id = %s", (resume_run,))  # fmt: skip
                row = cur.fetchone()
            if row is None:
                raise LookupError(f"fine-tune run {resume_run} does not exist (see `pony finetune runs`)")
            hyper, dataset, base_text, steps_done, checkpoint, status = row
            if status == "complete":
                raise ValueError(f"fine-tune run {resume_run} is already complete")
            config, base, run_id = FinetuneConfig(**hyper), Path(base_text), resume_run
            export = load_export(store, dataset)
        else:
            config = config or FinetuneConfig()
            export = load_export(store, dataset)
            run_id, steps_done, checkpoint = _register(conn, str(base), export, config), 0, None
    parts = _components(Path(base))
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=precision, gradient_accumulation_steps=config.gradient_accumulation)
    device = accelerator.device
    unet, vae, scheduler = parts["unet"], parts["vae"], parts["scheduler"]
    for frozen in ("vae", "text_encoder", "text_encoder_2"):
        if frozen in parts:
            parts[frozen].requires_grad_(False).to(device)
    latents, encoded = cache_latents(export.samples, store, vae, settings.resolved_home / "cache" / "latents",
                                     config.resolution, device=str(device), show_progress=show_progress)  # fmt: skip
    if config.method == "lora":
        from peft import LoraConfig

        unet.requires_grad_(False)
        unet.add_adapter(LoraConfig(r=config.lora_rank, lora_alpha=config.lora_rank, init_lora_weights="gaussian",
                                    target_modules=["to_k", "to_q", "to_v", "to_out.0"]))  # fmt: skip
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    work = Path(tempfile.mkdtemp(prefix=f"pony-finetune-{run_id}-"))
    if checkpoint:
        accelerator.load_state(str(store.get_tree(checkpoint, work / "resume")))
    by_bucket: dict[tuple[int, int], list[CachedLatent]] = {}
    for item in latents:
        by_bucket.setdefault(item.bucket, []).append(item)
    buckets = sorted(by_bucket)
    result = FinetuneResult(run_id, steps_done, steps_done, encoded, len(latents))
    unet.train()
    try:
        with progress_bar(show_progress, total=config.steps, initial=steps_done, desc=f"fine-tune {run_id}",
                          unit="step") as bar:  # fmt: skip
            for step in range(steps_done, config.steps):
                rng = random.Random(config.seed * 1_000_003 + step)
                generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
                bucket = rng.choices(buckets, weights=[len(by_bucket[b]) for b in buckets])[0]
                batch = [rng.choice(by_bucket[bucket]) for _ in range(config.batch_size)]
                prompts = [sample_caption_text(item.sample.caption, rng, config.keep_probability) for item in batch]
                clean = torch.stack([torch.load(item.path) for item in batch]).to(device)
                noise = torch.randn(clean.shape, generator=generator).to(device)
                timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(batch),),
                                          generator=generator).to(device)  # fmt: skip
                noisy = scheduler.add_noise(clean, noise, timesteps)
                hidden, added = encode_prompts(parts, prompts, [bucket] * len(batch), device)
                target = noise if scheduler.config.prediction_type == "epsilon" else scheduler.get_velocity(
                    clean, noise, timesteps)  # fmt: skip
                with accelerator.accumulate(unet):
                    kwargs = {"added_cond_kwargs": added} if added else {}
                    predicted = unet(noisy, timesteps, hidden, **kwargs).sample
                    loss = torch.nn.functional.mse_loss(predicted.float(), target.float())
                    if not torch.isfinite(loss):
                        raise NonFiniteLoss(f"loss became {loss.item()} at step {step + 1}; the last checkpoint "
                                            "is kept: lower --learning-rate and resume")  # fmt: skip
                    accelerator.backward(loss)
                    optimizer.step()
                    optimizer.zero_grad()
                result.losses.append(float(loss.item()))
                result.steps_done = step + 1
                bar.update(1)
                interrupted = stop_after is not None and result.steps_done - result.resumed_from >= stop_after
                if result.steps_done % config.checkpoint_every == 0 or result.steps_done == config.steps or interrupted:
                    _checkpoint(accelerator, store, work, settings, run_id, result)
                if interrupted and result.steps_done < config.steps:
                    return result
        result.weights_key = _save_final(accelerator, unet, store, work, run_id, config)
        _finish(settings, run_id, "complete", result)
    except Exception as exc:
        _finish(settings, run_id, "failed", result, error=str(exc))
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _checkpoint(accelerator, store: ObjectStore, work: Path, settings: Settings, run_id: int,
                result: FinetuneResult) -> None:  # fmt: skip
    """accelerate state (model, optimizer, RNG) to the object store, then the run row points at it."""
    local = work / f"checkpoint-{result.steps_done}"
    accelerator.save_state(str(local))
    prefix = f"finetune/run-{run_id}/checkpoint-{result.steps_done:07d}"
    store.put_tree(prefix, local)
    shutil.rmtree(local, ignore_errors=True)
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute("UPDATE finetune_run SET steps_done = %s, last_checkpoint = %s, metrics = metrics || %s "
                    "WHERE run_id = %s",
                    (result.steps_done, prefix, json.dumps({"last_loss": result.losses[-1]}), run_id))  # fmt: skip


def _save_final(accelerator, unet, store: ObjectStore, work: Path, run_id: int, config: FinetuneConfig) -> str:
    """LoRA: ``pytorch_lora_weights.safetensors`` (diffusers ``load_lora_weights`` reads it); full: a ``unet``
    folder. Stored under ``finetune/run-<id>/final``."""
    local = work / "final"
    unwrapped = accelerator.unwrap_model(unet)
    if config.method == "lora":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unwrapped))
        StableDiffusionPipeline.save_lora_weights(str(local), unet_lora_layers=layers, safe_serialization=True)
    else:
        unwrapped.save_pretrained(str(local / "unet"))
    prefix = f"finetune/run-{run_id}/final"
    store.put_tree(prefix, local)
    return prefix


def _finish(settings: Settings, run_id: int, status: str, result: FinetuneResult, error: str | None = None) -> None:
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(
            """UPDATE finetune_run SET status = %s, steps_done = %s, weights_key = %s, error = %s,
                   finished_at = now(), metrics = metrics || %s WHERE run_id = %s""",
            (status, result.steps_done, result.weights_key, error,
             json.dumps({"losses": result.losses[-1000:], "latents_encoded": result.latents_encoded}), run_id),
        )  # fmt: skip
