"""What each DAG task runs, as data: ``pony`` command lines (:class:`StageCommand`) and small planning functions.

No Airflow here, and nothing heavy imported at module level: DAG files import this at parse time.
"""

from __future__ import annotations

from pony_tasks.config import Settings, get_settings
from pony_tasks.execution import StageCommand


def configured_sites() -> tuple[str, ...]:
    """The enabled sites of the settings, sorted (the built-in four plus any ``[sites.NAME]``): one scrape task,
    one refresh task and one gate each in the scrape and refresh DAGs. Read when the DAG files are parsed."""
    return get_settings().site_names


SITES = configured_sites()


def scrape_new(site: str) -> StageCommand:
    return StageCommand(("scrape", site, "--mode", "new"))


def scrape_refresh(site: str, due_as_of: str) -> StageCommand:
    """Scores of posts that reached a refresh age as of ``due_as_of`` (the run's data-interval end)."""
    return StageCommand(("scrape", site, "--mode", "refresh", "--due-as-of", due_as_of))


FETCH_MINUTES = 50  # one run's downloads: the images asset (and so embedding) follows in batches of about an hour


def fetch_images(max_minutes: int = FETCH_MINUTES) -> StageCommand:
    """New posts' images, for at most ``max_minutes``: at the real size a backlog takes days, and each run's batch
    is checked and handed on (the images asset) while the next run carries on from the same place."""
    return StageCommand(("images", "fetch", "--max-minutes", str(max_minutes)), memory="2Gi")


def normalize_scores() -> StageCommand:
    return StageCommand(("normalize", "run"), cpu="2", memory="8Gi")


def embed_range(first_sha: str, last_sha: str, settings: Settings | None = None) -> StageCommand:
    settings = settings or get_settings()
    return StageCommand(
        ("embed", "--model", settings.embed_model, "--pretrained", settings.embed_pretrained, "--from-sha", first_sha,
         "--to-sha", last_sha),
        needs_gpu=True, cpu="4", memory="16Gi",
    )  # fmt: skip


def score_images(full: bool = False, version_id: int | str | None = None) -> StageCommand:
    """Scores with the active aesthetic version, or ``version_id`` (``full``: every embedding again)."""
    version = ("--version", str(version_id)) if version_id is not None else ()
    return StageCommand(("aesthetic", "score", *version, *(("--full",) if full else ())), memory="8Gi")


def train_aesthetic(params_json: str = "{{ params | tojson }}") -> StageCommand:
    """Training with the DAG run's validated Params as one JSON argument (a Jinja template by default)."""
    return StageCommand(("aesthetic", "train", "--params-json", params_json), memory="8Gi")


def link_works(plan_key: str | None = None) -> StageCommand:
    """New images matched against the existing works (incremental); CPU only. Its embedding cells spill every vector
    twice to local disk (~30 GB at 10M images), in passes that fit three quarters of the scratch it asks for.
    ``plan_key``: the embedding candidates come from the finished parts of that plan (``works_build``)."""
    arguments = ("--plan", plan_key) if plan_key is not None else ("--only-new",)
    return StageCommand(("works", "run", *arguments), cpu="2", memory="8Gi", scratch="32Gi")


def plan_works(plan_key: str, parts: int | str, scope: str = "--all-images") -> StageCommand:
    """A works plan of at least ``parts`` parts; ``scope``: ``--all-images`` (a first build) or ``--only-new`` (or a
    Jinja template rendering one of them). It reads a sample of the vectors to train the cells."""
    return StageCommand(("works", "plan", plan_key, "--parts", str(parts), scope), cpu="2", memory="4Gi")


def works_part(plan_key: str, part: int | str) -> StageCommand:
    """One part of a works plan: one read of the shards, its cell groups spilled to scratch and joined."""
    return StageCommand(("works", "part", plan_key, str(part)), cpu="2", memory="8Gi", scratch="32Gi")


def cluster_styles(clusters: int | str, seed: int | str, start: str = "warm") -> StageCommand:
    """A style clustering of the captioned embedding model (arguments may be Jinja templates of the DAG's params)."""
    return StageCommand(("styles", "run", "--clusters", str(clusters), "--seed", str(seed), "--start", start),
                        cpu="2", memory="8Gi")  # fmt: skip


def assign_styles() -> StageCommand:
    """Images embedded since the active style clustering: into their nearest cluster (nothing without one)."""
    return StageCommand(("styles", "assign"), memory="4Gi")


def style_sheets(version_id: int | str) -> StageCommand:
    return StageCommand(("styles", "sheets", str(version_id)), memory="2Gi")


def regenerate_captions(version_id: int | str, scheme: str = "v7") -> StageCommand:
    return StageCommand(("captions", "regenerate", "--scheme", scheme, "--aesthetic-version", str(version_id)),
                        memory="8Gi")  # fmt: skip


MAX_MAP_LENGTH = 1024  # Airflow's default [core] max_map_length: a mapped task of more entries fails at planning


def embed_task_size(pending: int, task_images: int, max_tasks: int = MAX_MAP_LENGTH) -> int:
    """Images per mapped embed task: ``task_images``, or more when that would make more than ``max_tasks`` tasks
    (28M pending images at 10,000 a task is 2,800 tasks; Airflow fails a mapping longer than its
    ``max_map_length``)."""
    if max_tasks < 1:
        raise ValueError(f"max_tasks must be at least 1, not {max_tasks}")
    return max(task_images, -(-pending // max_tasks))


def plan_embed_ranges(model: str | None = None, settings: Settings | None = None, *,
                      max_tasks: int = MAX_MAP_LENGTH) -> list[tuple[str, str]]:  # fmt: skip
    """Inclusive sha256 ranges of stored images that still need an embedding, ``embed_task_images`` per range (the
    unit of one mapped task; never one task per image) or more, so that there are at most ``max_tasks`` ranges
    (pass Airflow's ``[core] max_map_length``). Ranges do not overlap, so mapped tasks never embed the same image
    twice."""
    from pony_tasks.db import connect

    settings = settings or get_settings()
    pending = """SELECT i.sha256 FROM image i
                 WHERE NOT EXISTS (SELECT 1 FROM image_embedding e JOIN embedding_model m USING (model_id)
                                   WHERE m.name = %(model)s AND e.sha256 = i.sha256)"""
    model = model or settings.embed_model
    with connect(settings) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM ({pending}) p", {"model": model})
        size = embed_task_size(cur.fetchone()[0], settings.embed_task_images, max_tasks)
        cur.execute(f"""SELECT min(sha256), max(sha256)
                        FROM (SELECT sha256, (row_number() OVER (ORDER BY sha256) - 1) / %(size)s AS part
                              FROM ({pending}) p) numbered
                        GROUP BY part ORDER BY part""", {"size": size, "model": model})  # fmt: skip
        return [tuple(row) for row in cur.fetchall()]


def caption_target(
    event_versions: list[int], active_version: int | None, restyled: bool = False
) -> tuple[int | None, list[int]]:
    """Which aesthetic version to caption for, given every version named by the asset events that triggered this
    run (several promotions can collapse into one run): the active one if it is among them, else the newest named;
    a run triggered only by a new style clustering (``restyled``) captions for the active version.
    Returns (target, versions skipped as superseded)."""
    versions = sorted(set(event_versions))
    if not versions:
        return (active_version if restyled else None), []
    target = active_version if active_version in versions else versions[-1]
    return target, [v for v in versions if v != target]


def export_dataset(name: str, min_band: int | str) -> StageCommand:
    return StageCommand(("export", "dataset", "--format", "kohya", "--name", name, "--min-band", str(min_band)),
                        memory="4Gi")  # fmt: skip


def finetune_preflight() -> StageCommand:
    """The base model checked where training runs (the same image and volumes), before a person is asked."""
    return StageCommand(("finetune", "preflight", "--base", "{{ params.base_model }}"), memory="1Gi")


def finetune_train(dataset: str) -> StageCommand:
    """Training with the finetune DAG's Params (Jinja templates, rendered per run)."""
    return StageCommand(
        ("finetune", "run", "--base", "{{ params.base_model }}", "--dataset", dataset,
         "--method", "{{ params.method }}", "--steps", "{{ params.steps }}", "--batch-size", "{{ params.batch_size }}",
         "--learning-rate", "{{ params.learning_rate }}", "--resolution", "{{ params.resolution }}",
         "--checkpoint-every", "{{ params.checkpoint_every }}"),
        needs_gpu=True, cpu="8", memory="48Gi",
    )  # fmt: skip


def finetune_eval(dataset: str) -> StageCommand:
    argv = ("finetune", "eval", "--dataset", dataset, "--steps", "{{ params.eval_steps }}",
            "--resolution", "{{ params.eval_resolution }}")  # fmt: skip
    return StageCommand(argv, needs_gpu=True, cpu="4", memory="24Gi")
