from __future__ import annotations

import sys
from pathlib import Path

import click

from pony_tasks.cli.common import PonyContext


@click.group("finetune")
def finetune_group() -> None:
    """Gated diffusion fine-tunes (diffusers + accelerate) and the quality-tag evaluation."""


@finetune_group.command("run")
@click.option("--base", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="diffusers model directory (SD 1.x or SDXL family).")  # fmt: skip
@click.option("--dataset", help="Export name (`pony export dataset --format kohya --name …`).")
@click.option("--method", type=click.Choice(["lora", "full"]), default="lora", show_default=True)
@click.option("--steps", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--learning-rate", default=1e-4, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--lora-rank", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--resolution", default=512, show_default=True, type=click.IntRange(min=16),
              help="Bucket pixel budget: resolution² (SDXL: 1024).")  # fmt: skip
@click.option("--checkpoint-every", default=250, show_default=True, type=click.IntRange(min=1))
@click.option("--gradient-accumulation", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True)
@click.option("--resume", "resume_run", type=int, help="Continue run N from its newest checkpoint.")
@click.option("--stop-after", type=click.IntRange(min=1), help="End this invocation after N steps (resumable).")
@click.pass_obj
def finetune_run(ctx: PonyContext, base: Path | None, dataset: str | None, resume_run: int | None,
                 stop_after: int | None, **options) -> None:  # fmt: skip
    """Train; under `accelerate launch --config_file … -m pony_tasks finetune run …` on several GPUs."""
    from pony_tasks.finetune.train import FinetuneConfig, run_finetune

    if resume_run is None and (base is None or dataset is None):
        raise click.UsageError("--base and --dataset are needed (or --resume RUN)")
    config = FinetuneConfig(**options)
    result = run_finetune(base or Path("."), dataset or "", config, settings=ctx.settings, resume_run=resume_run,
                          stop_after=stop_after, show_progress=None)  # fmt: skip
    click.echo(result.summary())


@finetune_group.command("preflight")
@click.option("--base", required=True, help="diffusers model directory the fine-tune will start from.")
def finetune_preflight(base: str) -> None:
    """Check the base model before a fine-tune is approved: a diffusers model directory with every component
    (no weights loaded); exits 3, naming the setting, when it is missing."""
    from pony_tasks.finetune.base_model import check_base_model

    click.echo(f"base model ready: {check_base_model(base)}")


@finetune_group.command("eval")
@click.option("--run", "run_id", type=int, help="A complete fine-tune run.")
@click.option("--dataset", help="Instead of --run: the newest complete run on this export.")
@click.option("--prompt", "prompts", multiple=True, help="Content prompt (repeat); default: three fixed prompts.")
@click.option("--seeds", default="0,1", show_default=True, help="Comma-separated seeds per prompt.")
@click.option("--steps", default=25, show_default=True, type=click.IntRange(min=1), help="Inference steps.")
@click.option("--resolution", default=512, show_default=True, type=click.IntRange(min=16))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.pass_obj
def finetune_eval(ctx: PonyContext, run_id: int | None, dataset: str | None, prompts: tuple[str, ...], seeds: str,
                  steps: int, resolution: int, device: str) -> None:  # fmt: skip
    """Mean aesthetic score per quality tag alone, and Spearman(tag level, score); stores a plot."""
    from pony_tasks.db import connect
    from pony_tasks.finetune.evaluate import DEFAULT_PROMPTS, evaluate_tags

    if run_id is None:
        if dataset is None:
            raise click.UsageError("give --run N or --dataset NAME")
        with connect(ctx.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT max(run_id) FROM finetune_run WHERE dataset = %s AND status = 'complete'", (dataset,))
            run_id = cur.fetchone()[0]
        if run_id is None:
            raise click.ClickException(f"no complete fine-tune run on export {dataset!r}")

    result = evaluate_tags(run_id, settings=ctx.settings, prompts=prompts or DEFAULT_PROMPTS,
                           seeds=tuple(int(s) for s in seeds.split(",")), steps=steps, resolution=resolution,
                           device=device, show_progress=None)  # fmt: skip
    click.echo(result.describe())


@finetune_group.command("gates")
@click.option("--dataset", required=True)
@click.option("--min-new-images", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--context", default="cli", show_default=True, help="Recorded with each decision.")
@click.pass_obj
def finetune_gates(ctx: PonyContext, dataset: str, min_new_images: int, context: str) -> None:
    """Evaluate and record the automatic gates; exits 1 if one is unmet (approval is the DAG's)."""
    from pony_tasks.finetune.gates import check_gates

    decisions = check_gates(dataset, min_new_images=min_new_images, context=context, settings=ctx.settings)
    for d in decisions:
        click.echo(f"{'pass' if d.passed else 'FAIL'}  {d.gate:<16} {d.detail}")
    if not all(d.passed for d in decisions):
        sys.exit(1)


@finetune_group.command("runs")
@click.pass_obj
def finetune_runs(ctx: PonyContext) -> None:
    """Fine-tune runs, newest first."""
    from pony_tasks.db import connect

    with connect(ctx.settings) as conn, conn.cursor() as cur:
        cur.execute("""SELECT run_id, status, method, dataset, steps_done, hyperparameters->>'steps', created_at
                       FROM finetune_run ORDER BY run_id DESC""")  # fmt: skip
        for run_id, status, method, dataset, done, steps, created in cur.fetchall():
            click.echo(
                f"{run_id:>4} {status:<9} {method:<5} {dataset:<20} {done}/{steps} steps  {created:%Y-%m-%d %H:%M}"
            )


@finetune_group.command("tiny-model")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--seed", default=0, show_default=True)
def finetune_tiny_model(directory: Path, seed: int) -> None:
    """Write a seeded random-init tiny SD-1.x pipeline (tests, demo; no weights downloaded)."""
    from pony_tasks.finetune.tiny import build_tiny_pipeline

    click.echo(f"tiny model written to {build_tiny_pipeline(directory, seed)}")
