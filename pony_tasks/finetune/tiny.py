"""Tiny Stable-Diffusion-1.x and SDXL family models built from configs, for tests and the demo (no weights downloaded).

Every part is real diffusers/transformers code at toy size: ``UNet2DConditionModel``, ``AutoencoderKL``,
``CLIPTextModel`` and a ``CLIPTokenizer`` whose vocabulary is the CLIP BPE that ships inside open_clip. Seeded, and
saved as a standard diffusers pipeline directory — the same layout a real base model (``--base MODEL_DIR``) has.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

TINY_RESOLUTION = 32  # pixels; the VAE downsamples 2× → 16×16 latents


def write_clip_tokenizer(directory: Path) -> Path:
    """vocab.json + merges.txt for ``CLIPTokenizer`` from open_clip's bundled BPE (the OpenAI CLIP vocabulary)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    merges = gzip.open(default_bpe()).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return directory


def build_tiny_pipeline(directory: Path, seed: int = 0, family: str = "sd15") -> Path:
    """Create and save a seeded random-init tiny pipeline of the SD-1.x (``sd15``) or SDXL (``sdxl``: two text
    encoders, pooled text embeddings and size/crop time ids) family at ``directory``; returns it."""
    if family not in ("sd15", "sdxl"):
        raise ValueError(f"family must be sd15 or sdxl, got {family!r}")
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    xl = family == "sdxl"
    extra = dict(addition_embed_type="text_time", addition_time_embed_dim=8,
                 projection_class_embeddings_input_dim=32 + 6 * 8) if xl else {}  # fmt: skip
    unet = UNet2DConditionModel(
        sample_size=TINY_RESOLUTION // 2, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64 if xl else 32,
        attention_head_dim=4, norm_num_groups=8, **extra,
    )  # fmt: skip
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8, sample_size=TINY_RESOLUTION,
    )  # fmt: skip
    text_config = CLIPTextConfig(
        vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=32,
    )  # fmt: skip
    text_encoder = CLIPTextModel(text_config)
    bpe = write_clip_tokenizer(directory / "_bpe")
    tokenizer = CLIPTokenizer(str(bpe / "vocab.json"), str(bpe / "merges.txt"), pad_token="<|endoftext|>",
                              model_max_length=77)  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, prediction_type="epsilon", clip_sample=False, steps_offset=1)  # fmt: skip
    if xl:
        from diffusers import StableDiffusionXLPipeline
        from transformers import CLIPTextModelWithProjection

        second = CLIPTextModelWithProjection(text_config)
        pipeline = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=second,
                                             tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet,
                                             scheduler=scheduler)  # fmt: skip
    else:
        pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                           scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                           requires_safety_checker=False)  # fmt: skip
    pipeline.save_pretrained(directory)
    for leftover in bpe.iterdir():
        leftover.unlink()
    bpe.rmdir()
    return directory
