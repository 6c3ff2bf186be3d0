"""The kohya export: a folder kohya-ss/sd-scripts trains on as it is.

``<sha256>.<ext>`` and ``<sha256>.txt`` per sample, ``meta.json`` (sd-scripts' fine-tuning metadata: image file →
``caption`` and ``image_size``), and two dataset configs beside them — ``dataset.toml`` (caption files, the
DreamBooth-style subset every sd-scripts trainer reads) and ``dataset-finetune.toml`` (the same through
``metadata_file``).

Keys and behaviour read from sd-scripts at commit 48d368f (2026-02-16), ``library/config_util.py`` (the schema) and
``library/train_util.py`` (``read_caption``, ``process_caption``, ``FineTuningDataset``):

- ``enable_wildcard = true``: a caption file of several lines is read whole and one line is picked at random per
  step. A V7 caption is written as ``variants`` lines, each with its own independent draw of the ``score_K_up`` tags
  and the content that fits beside them within the token limit (captions.lines), so kohya reproduces our sampling
  without our trainer. Wildcards are expanded in every
  line (``{a|b}``), so braces in tags are written doubled (``{{``), kohya's escape.
- ``keep_tokens_separator = "|||"`` with ``shuffle_caption = true``: the part before ``|||`` stays first in order
  (band tag, source, rating, and V6's chain), the rest is shuffled per step. kohya splits at ``|||`` only when
  shuffling, tag dropout or token warm-up is on, so shuffling must stay on — otherwise ``|||`` reaches the text
  encoder as text.
- no ``caption_tag_dropout_rate``: it would drop the band tag's companions and content tags alike; the V7 lines
  already drop ``score_K_up`` tags at our rate.
- ``max_token_length`` is a command-line option, not a config key, whose only choices are none (75), 150 and 225
  (``library/train_util.py`` ``add_training_arguments``): the command in ``dataset.toml``'s header passes it only
  when the caption set's token limit is above 75 (:func:`trainer_command`).
- buckets: with ``bucket_no_upscale`` an image's bucket side is its side rounded down to ``bucket_reso_steps``
  (``BucketManager.select_bucket``): an image under that on a side gets a zero-wide bucket and the VAE fails, so
  such images are left out of the export (``MIN_SIDE``) and counted in the dataset card.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pony_tasks.captions.lines import KEEP_SEPARATOR, Line
from pony_tasks.export.selection import CaptionSetInfo, ExportSample

DEFAULT_VARIANTS = 8  # V7 lines per caption file
RESOLUTION = 1024  # the base resolution written into dataset.toml (SDXL's; 512 for SD 1.5)
BUCKET_RESO_STEPS = 64  # dataset.toml's bucket_reso_steps
MIN_SIDE = BUCKET_RESO_STEPS  # images smaller on a side get no bucket: left out of kohya exports
WINDOW = 1024  # samples handed to the writer threads at once
TOKEN_LENGTHS = (150, 225)  # sd-scripts' --max_token_length choices besides none (75)


def kohya_escape(line: str) -> str:
    """A caption line as kohya reads it with ``enable_wildcard``: braces doubled, so none is taken as a wildcard."""
    return line.replace("{", "{{").replace("}", "}}")


def kohya_unescape(line: str) -> str:
    return line.replace("{{", "{").replace("}}", "}")


def caption_file(lines: list[Line]) -> str:
    return "\n".join(kohya_escape(line.kohya()) for line in lines)


def trainer_command(token_limit: int | None, config: str = "dataset.toml") -> str:
    """The sd-scripts command line for a caption set: ``--max_token_length`` only above 75 tokens (150 or 225, the
    smallest that holds the limit; sd-scripts refuses any other value)."""
    command = f"accelerate launch sdxl_train_network.py --dataset_config {config}"
    limit = token_limit or 75
    if limit > 75:
        command += f" --max_token_length {next((n for n in TOKEN_LENGTHS if n >= limit), TOKEN_LENGTHS[-1])}"
    return command


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of ``size`` items (the last shorter): itertools.batched, which Python 3.11 lacks."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def write_kohya(
    prefix: str, samples: Iterable[ExportSample], put: Callable[[str, bytes], None],
    copy: Callable[[str, str, str], None], tick: Callable[[ExportSample, list[Line]], None], *, token_limit: int | None,
    put_path: Callable[[str, Path], None], variants: int = DEFAULT_VARIANTS, writers: int = 1,
) -> int:  # fmt: skip
    """Write every sample's image (``copy``: inside the store, key → key) and caption file (``writers`` samples at
    once: ObjectStore.parallel_writes, a bounded window of samples in flight), then ``meta.json``, written entry by
    entry to a temporary file in the samples' order (sha256: sorted keys) and stored from it (``put_path``) — never
    the whole of it in memory. ``tick`` gets each sample's lines; returns the number of samples."""

    def write(sample: ExportSample) -> tuple[str, str]:
        image = f"{sample.sha256}.{sample.extension}"
        copy(f"{prefix}/{image}", sample.storage_key, sample.sha256)
        lines = sample.lines(variants, token_limit)
        caption = caption_file(lines)
        put(f"{prefix}/{sample.sha256}.txt", caption.encode())
        tick(sample, lines)
        entry = {"caption": caption, "image_size": [sample.width, sample.height]}
        return image, json.dumps(entry, ensure_ascii=False)

    count = 0
    with tempfile.TemporaryDirectory(prefix="pony-kohya-") as workdir:
        meta_path = Path(workdir) / "meta.json"
        with open(meta_path, "w", encoding="utf-8") as meta:
            meta.write("{")

            def record(image: str, entry: str) -> None:
                nonlocal count
                meta.write(f"{',' if count else ''}\n {json.dumps(image)}: {entry}")
                count += 1

            if writers > 1:
                with ThreadPoolExecutor(writers) as pool:
                    for window in batched(samples, WINDOW):  # Executor.map would take every sample at once
                        for image, entry in pool.map(write, window):
                            record(image, entry)
            else:  # no pool: handing each sample to a thread costs more than its few system calls
                for sample in samples:
                    record(*write(sample))
            meta.write("\n}\n")
        put_path(f"{prefix}/meta.json", meta_path)
    return count


def dataset_configs(image_dir: str, caption_set: CaptionSetInfo, *, resolution: int = RESOLUTION) -> dict[str, str]:
    """{file name: TOML text} of the two sd-scripts dataset configs for an export whose files lie in ``image_dir``."""
    limit = caption_set.token_limit or 75

    def header(file_name: str) -> str:
        return (
            "# sd-scripts dataset config written by `pony export dataset` (keys as of kohya-ss/sd-scripts 48d368f,\n"
            "# library/config_util.py). Train with e.g. (in this folder; add your model and training options)\n"
            f"#   {trainer_command(caption_set.token_limit, file_name)}\n"
            f"# Caption set {caption_set.set_id}, scheme {caption_set.scheme}, every caption line within {limit} CLIP "
            "tokens.\n# shuffle_caption must stay true: kohya splits at keep_tokens_separator only when it shuffles.\n"
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
        f"bucket_reso_steps = {BUCKET_RESO_STEPS}\n"
        "bucket_no_upscale = true\n"
        "\n  [[datasets.subsets]]\n"
        f"  image_dir = {json.dumps(image_dir)}\n"
        "  num_repeats = 1\n"
    )
    return {
        "dataset.toml": header("dataset.toml") + general + '  caption_extension = ".txt"\n',
        "dataset-finetune.toml": header("dataset-finetune.toml")
        + general
        + f"  metadata_file = {json.dumps(f'{image_dir}/meta.json')}\n",
    }
