"""Gated diffusion fine-tunes (diffusers + accelerate) on exported datasets, and the quality-tag evaluation."""
