"""Fine-tune step throughput: images/s and the share of the device's peak FLOP/s (target ≥ 35 % on a GPU).

Builds a UNet from the SDXL config (random init: no weights needed) — or, with ``--size sd15`` / ``--size tiny``,
smaller ones — and times full training steps (forward, backward, AdamW) at the given resolution with bf16 autocast on
CUDA. FLOPs per step are counted once with ``torch.utils.flop_counter``; the baseline in the same run is the same
step in fp32 without autocast, so the ratio shows what mixed precision buys.

    .venv/bin/python benchmarks/finetune.py --size sdxl --resolution 1024 --batch-size 4   # a GPU machine
    .venv/bin/python benchmarks/finetune.py --size tiny --resolution 64 --batch-size 4     # anywhere (CPU)
"""

from __future__ import annotations

import argparse
import time

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}  # bf16 dense
SIZES = {
    "sdxl": dict(block_out_channels=(320, 640, 1280), layers_per_block=2, cross_attention_dim=2048,
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816, use_linear_projection=True),
    "sd15": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                 attention_head_dim=8),
    "tiny": dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, attention_head_dim=4,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=8),
}  # fmt: skip


def main() -> None:
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="sdxl")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=args.resolution // 8, **SIZES[args.size]).to(device)
    if device == "cuda" and args.size == "sdxl":
        unet.enable_gradient_checkpointing()  # SDXL at 1024 px, batch 4 does not fit 80 GB with AdamW otherwise
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-5)
    b, side = args.batch_size, args.resolution // 8
    latents = torch.randn(b, 4, side, side, device=device)
    timesteps = torch.randint(0, 1000, (b,), device=device)
    context = torch.randn(b, 77, unet.config.cross_attention_dim, device=device)
    added = ({"text_embeds": torch.randn(b, 1280, device=device), "time_ids": torch.randn(b, 6, device=device)}
             if args.size == "sdxl" else None)  # fmt: skip

    def step(autocast: bool) -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            out = unet(latents, timesteps, context, added_cond_kwargs=added).sample
            loss = torch.nn.functional.mse_loss(out.float(), latents)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        step(False)
    flops = counter.get_total_flops()
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    print(f"{args.size} UNet ({params:,.0f} M parameters) at {args.resolution} px, batch {b}, on {name}; "
          f"{flops / 1e9:,.1f} GFLOP per step")  # fmt: skip
    results = {}
    variants = [("fp32 (baseline)", False)] + ([("bf16 autocast", True)] if device == "cuda" else [])
    for label, autocast in variants:
        for _ in range(2):
            step(autocast)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(args.steps):
            step(autocast)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - started) / args.steps
        results[label] = seconds
        achieved = flops / seconds / 1e12
        share = f"{100 * achieved / peak:.1f} % of {name}'s {peak:.0f} TFLOP/s bf16 peak" if peak else "no peak known"
        print(f"  {label:<16} {seconds * 1000:8.1f} ms/step  {b / seconds:7.2f} images/s  {achieved:8.4f} TFLOP/s  "
              f"({share})")  # fmt: skip
    if len(results) == 2:
        base, fast = results.values()
        print(f"bf16 / fp32 speed-up: {base / fast:.2f}× (target: ≥ 35 % of peak on a GPU)")
    else:
        print("no CUDA device: bf16 autocast and the %-of-peak target need a GPU machine")


if __name__ == "__main__":
    main()
