"""The kohya export: a folder kohya-ss/sd-scripts trains on as it is.

``<sha256>.<ext>`` and ``<sha256>.txt`` per sample, ``meta.json`` (sd-scripts' fine-tuning metadata: image file →
``caption`` and ``image_size``), and two dataset configs beside them — ``dataset.toml`` (caption files, the
DreamBooth-style subset every sd-scripts trainer reads) and ``dataset-finetune.toml`` (the same through
``metadata_file``).

Keys and behaviour read from sd-scripts at commit 48d368f (2026-02-16), ``library/config_util.py`` (the schema) and
``library/train_util.py`` (``read_caption``, ``process_caption``, ``FineTuningDataset``):

- ``enable_wildcard = true``: a caption file of several lines is read whole and one line is picked at random per
  step. A V7 caption is written as ``variants`` lines, each with its own independent draw of the ``score_K_up`` tags
  (render.pre_sampled_lines), so kohya reproduces our sampling without our trainer. Wildcards are expanded in every
  line (``{a|b}``), so braces in tags are written doubled (``{{``), kohya's escape.
- ``keep_tokens_separator = "|||"`` with ``shuffle_caption = true``: the part before ``|||`` stays first in order
  (band tag, source, rating, and V6's chain), the rest is shuffled per step. kohya splits at ``|||`` only when
  shuffling, tag dropout or token warm-up is on, so shuffling must stay on — otherwise ``|||`` reaches the text
  encoder as text.
- no ``caption_tag_dropout_rate``: it would drop the band tag's companions and content tags alike; the V7 lines
  already drop ``score_K_up`` tags at our rate.
- ``max_token_length`` is a command-line option, not a config key: pass ``--max_token_length`` 150 or 225 when the
  caption set's token limit is above 75 (the dataset card says which).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from pony_tasks.captions.render import KEEP_SEPARATOR, pre_sampled_lines
from pony_tasks.export.selection import CaptionSetInfo, ExportSample

DEFAULT_VARIANTS = 8  # V7 lines per caption file
KEEP_PROBABILITY = 0.5  # of each score_K_up tag per line: what our own trainer uses (finetune config)
RESOLUTION = 1024  # the base resolution written into dataset.toml (SDXL's; 512 for SD 1.5)


def kohya_escape(line: str) -> str:
    """A caption line as kohya reads it with ``enable_wildcard``: braces doubled, so none is taken as a wildcard."""
    return line.replace("{", "{{").replace("}", "}}")


def kohya_unescape(line: str) -> str:
    return line.replace("{{", "{").replace("}}", "}")


def caption_file(sample: ExportSample, variants: int) -> str:
    lines = pre_sampled_lines(sample.text, variants, sample.sha256, KEEP_PROBABILITY)
    return "\n".join(kohya_escape(line) for line in lines)


def write_kohya(
    prefix: str, samples: Iterable[ExportSample], put: Callable[[str, bytes], None],
    copy: Callable[[str, str, str], None], tick: Callable[[], None], *, variants: int = DEFAULT_VARIANTS,
    writers: int = 1,
) -> dict:  # fmt: skip
    """Write every sample's image (``copy``: inside the store, key → key) and caption file (``writers`` samples at
    once: ObjectStore.parallel_writes), then ``meta.json``; returns the metadata."""
    meta = {}

    def write(sample: ExportSample) -> None:
        image = f"{sample.sha256}.{sample.extension}"
        copy(f"{prefix}/{image}", sample.storage_key, sample.sha256)
        caption = caption_file(sample, variants)
        put(f"{prefix}/{sample.sha256}.txt", caption.encode())
        meta[image] = {"caption": caption, "image_size": [sample.width, sample.height]}
        tick()

    if writers > 1:
        with ThreadPoolExecutor(writers) as pool:
            for _ in pool.map(write, samples):
                pass
    else:  # no pool: handing each sample to a thread costs more than its few system calls (ObjectStore.parallel_writes)
        for sample in samples:
            write(sample)
    meta = dict(sorted(meta.items()))
    put(f"{prefix}/meta.json", json.dumps(meta, ensure_ascii=False, indent=1).encode())
    return meta


def dataset_configs(image_dir: str, caption_set: CaptionSetInfo, *, resolution: int = RESOLUTION) -> dict[str, str]:
    """{file name: TOML text} of the two sd-scripts dataset configs for an export whose files lie in ``image_dir``."""
    limit = caption_set.token_limit or 75
    header = (
        "# sd-scripts dataset config written by `pony export dataset` (keys as of kohya-ss/sd-scripts 48d368f,\n"
        "# library/config_util.py). Train with e.g.\n"
        f"#   accelerate launch sdxl_train_network.py --dataset_config {{this file}} "
        f"--max_token_length {max(75, min(225, -(-limit // 75) * 75))} ...\n"
        f"# Caption set {caption_set.set_id}, scheme {caption_set.scheme}, captions within {limit} CLIP tokens.\n"
        "# shuffle_caption must stay true: kohya splits at keep_tokens_separator only when it shuffles.\n"
    )
    general = (
        "[general]\n"
        "shuffle_caption = true\n"
        f'keep_tokens_separator = "{KEEP_SEPARATOR}"\n'
        "enable_wildcard = true\n"
        'caption_separator = ","\n'
        "\n[[datasets]]\n"
        f"resolution = {resolution}\n"
        "batch_size = 1\n"
        "enable_bucket = true\n"
        f"min_bucket_reso = {resolution // 2}\n"
        f"max_bucket_reso = {resolution * 2}\n"
        "bucket_reso_steps = 64\n"
        "bucket_no_upscale = true\n"
        "\n  [[datasets.subsets]]\n"
        f"  image_dir = {json.dumps(image_dir)}\n"
        "  num_repeats = 1\n"
    )
    return {
        "dataset.toml": header + general + '  caption_extension = ".txt"\n',
        "dataset-finetune.toml": header + general + f"  metadata_file = {json.dumps(f'{image_dir}/meta.json')}\n",
    }
