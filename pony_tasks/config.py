"""The one settings object: environment variables ``PONY_*``, an optional ``pony.toml``, then defaults.

Precedence (highest first): keyword arguments, environment variables, the TOML file, defaults.
The TOML file is ``$PONY_CONFIG`` if set, else ``./pony.toml`` if it exists. A bad value raises
:class:`ConfigError` naming the setting and the environment variable that sets it.
"""

from __future__ import annotations

import os
import re
import tomllib
from enum import Enum, StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from pony_tasks.boorus.sites import DEFAULT_SITES, SiteConfig, check_site_name

ENV_PREFIX = "PONY_"
DEFAULT_CONFIG_FILE = "pony.toml"
DEFAULT_SCRAPE_CONTACT = "pony-pipeline-operator"  # a placeholder: e621 refuses to be scraped with it
SECRET_FIELDS = frozenset({"database_url", "s3_access_key_id", "s3_secret_access_key", "booru_credentials"})


class ConfigError(ValueError):
    """A setting has a value we cannot use; the message names it and says what is expected."""


class ExecutionTarget(StrEnum):
    """Where heavy pipeline work runs (see :mod:`pony_tasks.execution`)."""

    local = "local"
    kubernetes = "kubernetes"


class Settings(BaseSettings):
    """Every setting the pipeline reads. Field ``x`` is set by ``PONY_X`` or key ``x`` in ``pony.toml``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    home: Path = Field(Path(".pony"), description="Working directory for the embedded database and local objects.")
    database_url: SecretStr | None = Field(
        None, description="postgresql://… of an external server; unset means the embedded server under home."
    )
    storage_url: str | None = Field(
        None, description="file:///path or s3://bucket/prefix; unset means file://<home>/objects."
    )
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto, …); unset means AWS.")
    s3_region: str = Field("us-east-1", description="Region for the S3 client.")
    s3_access_key_id: SecretStr | None = Field(None, description="Unset means boto3's own credential chain.")
    s3_secret_access_key: SecretStr | None = Field(None, description="Unset means boto3's own credential chain.")
    execution_target: ExecutionTarget = Field(
        ExecutionTarget.local, description="local: run in the Airflow worker; kubernetes: run in a pod."
    )
    kubernetes_namespace: str = Field("pony", description="Namespace for pipeline pods.")
    worker_image: str = Field("pony-pipeline:latest", description="Container image that holds the `pony` CLI.")
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"}, description="Node selector for GPU pods."
    )
    gpu_per_pod: int = Field(1, ge=0, le=16, description="GPUs requested by each GPU pod.")
    gpu_tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        description="Kubernetes tolerations for GPU pods (key, operator, value, effect).",
    )
    kubernetes_env_secret: str | None = Field(
        "pony-settings", description="Kubernetes Secret whose keys (PONY_DATABASE_URL, …) become the pods' environment."
    )
    embed_model: str = Field("ViT-L-14", description="open_clip model the embed DAG uses.")
    embed_pretrained: str = Field(
        "openai", description="open_clip tag, checkpoint file or object-store URI of the embed DAG's weights."
    )
    caption_token_limit: int = Field(
        75, ge=1, le=1000,
        description="CLIP tokens a caption may use (75; 150 or 225 for kohya's --max_token_length); content tags past "
        "it are dropped, least informative first.",
    )  # fmt: skip
    caption_style_tags: Literal["off", "add", "replace_artist"] = Field(
        "add",
        description="style_cluster_N tags from the active style clustering (`pony styles`): off, add (beside the "
        "artist tags) or replace_artist (instead of them, as Pony V7 does).",
    )
    style_clusters: int = Field(32, ge=2, le=100_000, description="Clusters of a style clustering (`pony styles run`).")
    memory_budget_mib: int = Field(
        3072, ge=256,
        description="Memory one stage's own process may use for its working data (MiB); stages that could hold the "
        "whole corpus (works linking) work in pieces of this size instead. Keep it below the pod's memory request.",
    )  # fmt: skip
    scratch_budget_mib: int = Field(
        16384, ge=64,
        description="Local disk one stage's own process may fill with scratch files at once (MiB): works linking's "
        "embedding cells (every vector twice: ~30 GB at 10M images) are spilled and joined in passes that fit it.",
    )  # fmt: skip
    embed_task_images: int = Field(
        10_000, ge=10_000, description="Images per mapped embed task in the embed_and_score DAG (at least 10,000)."
    )
    finetune_param_defaults: dict[str, Any] = Field(
        default_factory=dict,
        description="Defaults of the finetune DAG's parameters (what an asset-triggered run uses), e.g. "
        '{"base_model": "/models/sdxl", "resolution": 1024}; the names are the DAG\'s parameters.',
    )
    alert_channels: list[str] = Field(
        default_factory=lambda: ["log"],
        description="Where failure and data-quality alerts go: log (always on), slack, smtp.",
    )
    alert_slack_conn_id: str = Field("pony_slack", description="Airflow connection of the Slack incoming webhook.")
    alert_smtp_conn_id: str = Field("smtp_default", description="Airflow connection of the SMTP server.")
    alert_email_to: list[str] = Field(default_factory=list, description="Recipients of SMTP alerts.")
    log_level: str = Field("INFO", description="Python logging level name.")

    # Booru scraping ------------------------------------------------------------------------------------------------
    sites: dict[str, SiteConfig] = Field(
        default_factory=dict,
        description="Boorus as data: NAME = {engine (danbooru, e621, philomena, gelbooru), base_url, hosts, "
        "rate_per_second, metric, source, file_base_url, filter_id, enabled}; added to (or replacing) the built-in "
        "danbooru, e621, derpibooru and gelbooru. See pony_tasks/boorus/sites.py.",
    )
    scrape_contact: str = Field(
        DEFAULT_SCRAPE_CONTACT,
        description="Who to contact about our scraper, sent in the User-Agent; e621 wants your e621 username.",
    )
    booru_base_urls: dict[str, str] = Field(
        default_factory=dict, description='Per-site API base URL overrides, e.g. {"e621": "https://e926.net"}.'
    )
    booru_rate_limits: dict[str, float] = Field(
        default_factory=dict, description="Per-site requests/second overrides (defaults per adapter; e621 1/s)."
    )
    booru_credentials: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='Per-site "login:api_key" (Gelbooru: "user_id:api_key"; Derpibooru: "api_key"). Never logged.',
    )
    booru_file_hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per-site domain suffixes pages and files may come from (a host matches a suffix or ends with "
        "'.'+suffix); the site's base URL is always allowed; unset: the site's `hosts`. Fix a CDN move here.",
    )
    booru_file_base_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Per-site file server for URLs rebuilt from md5 + ext when the API hides them (e621: default "
        "https://static1.e621.net).",
    )
    refresh_ages_days: list[int] = Field(
        default_factory=lambda: [1, 7, 30, 90, 365], description="Post ages at which scores are re-fetched."
    )
    http_timeout_seconds: float = Field(30.0, gt=0, description="Timeout for one booru HTTP request.")
    http_max_attempts: int = Field(8, ge=1, le=50, description="Attempts per request before giving up.")
    http_backoff_seconds: float = Field(
        1.0, gt=0, description="First retry delay; doubles per attempt (with jitter), capped at 120 s."
    )
    refresh_sweep_days: float = Field(
        30.0, ge=0, description="Every stored post is checked again (deletion, score) within this many days: each "
        "daily refresh also walks stored posts ÷ page size ÷ this many pages over ALL stored posts, from where the "
        "last refresh's sweep stopped, so deletions outside the ranges due for a score refresh are found too (0: off).",
    )
    refresh_sweep_pages: int = Field(
        5, ge=0, description="The fewest pages a refresh's sweep walks (small sites are swept within a few runs).",
    )
    http_challenge_wait_seconds: float = Field(
        5.0, ge=5.0, description="Silence after an anti-bot challenge page (Derpibooru's 501) before one more try; "
        "the site asks for at least 5 s.",
    )
    tag_category_max_age_days: float = Field(
        30.0, gt=0, description="Derpibooru tag categories cached in the database are fetched again after this long."
    )
    image_max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="Largest image file we download.")
    image_max_pixels: int = Field(
        80_000_000, gt=0, description="Decompression-bomb limit: images with more pixels are refused."
    )
    image_fetch_workers: int = Field(8, ge=1, le=128, description="Concurrent image downloads.")
    image_host_rate_limit: float = Field(10.0, gt=0, description="Image requests/second per host.")

    # Score normalisation -------------------------------------------------------------------------------------------
    normalize_metrics: dict[str, str] = Field(
        default_factory=dict,
        description="Per-site popularity metric: favorites, score, up_votes or wilson_score; unset: the site's "
        "`metric` (danbooru and e621 favorites, derpibooru wilson_score, gelbooru score).",
    )
    rating_goal: int = Field(
        20_000, ge=1, description="Ratings a rater aims for: the rating page shows progress, pace and time left.",
    )
    rating_repeat_share: float = Field(
        0.03, ge=0, le=0.5, description="Share of images the rating page shows a rater again, unannounced, to "
        "measure their test–retest agreement (`pony ratings stats`); 0: never.",
    )
    maturity_days: float = Field(30.0, gt=0, description="A post's score counts as settled this long after upload.")
    min_cohort_size: int = Field(
        50, ge=1, description="Consecutive upload months merge until a cohort holds this many matured posts."
    )
    normalize_keep_runs: int = Field(
        3, ge=1, description="Normalisation runs whose scores are kept (one partition each, ~130 bytes a post); "
        "older runs' scores are dropped after each run, their records stay.",
    )

    @field_validator("storage_url")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not (value.startswith("file://") or value.startswith("s3://")):
            raise ValueError("must start with file:// or s3://bucket[/prefix]")
        if value.startswith("s3://") and not value[len("s3://") :].split("/", 1)[0]:
            raise ValueError("s3:// URL needs a bucket name, e.g. s3://my-bucket/pony")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL, e.g. postgresql://user:pass@host:5432/pony")
        return value

    @field_validator("booru_file_hosts")
    @classmethod
    def _file_hosts(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for site, suffixes in value.items():
            for suffix in suffixes:
                if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", suffix):
                    raise ValueError(f"{site}: {suffix!r} is not a lower-case host name or domain suffix "
                                     "(no scheme, port or path), e.g. gelbooru.com")
        return value

    @field_validator("booru_file_base_urls", "booru_base_urls")
    @classmethod
    def _site_urls(cls, value: dict[str, str]) -> dict[str, str]:
        for site, url in value.items():
            if not re.match(r"https?://[^/]+", url):
                raise ValueError(f"{site}: {url!r} is not an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _sites(self) -> Settings:
        """The built-in sites plus the configured ones; every per-site setting names a known site; credentials
        have the shape the site's engine needs; per-site hosts and metrics filled from the site rows."""
        sites = {**DEFAULT_SITES, **self.sites}
        for name in sites:
            check_site_name(name)
        known = sorted(sites)
        for field in ("booru_base_urls", "booru_rate_limits", "booru_credentials", "booru_file_hosts",
                      "booru_file_base_urls", "normalize_metrics"):  # fmt: skip
            unknown = sorted(set(getattr(self, field)) - set(sites))
            if unknown:
                raise ValueError(f"{field}: unknown site(s) {unknown}; sites are {known} (add one as "
                                 "[sites.NAME] with its engine and base_url in pony.toml)")  # fmt: skip
        for site, secret in self.booru_credentials.items():
            text, engine = secret.get_secret_value(), sites[site].engine
            if engine == "gelbooru":
                user_id, colon, api_key = text.partition(":")
                if not colon or not user_id.strip().isdigit() or not api_key.strip():
                    raise ValueError(f'booru_credentials: {site} needs "user_id:api_key" with a numeric user_id '
                                     "(both from the site's account options, API Access Credentials)")  # fmt: skip
            elif engine in ("danbooru", "e621") and (":" not in text or not all(text.partition(":")[::2])):
                raise ValueError(f'booru_credentials: {site} needs "login:api_key"')
        allowed = {"favorites", "score", "up_votes", "wilson_score"}
        for site, metric in self.normalize_metrics.items():
            if metric not in allowed:
                raise ValueError(f"normalize_metrics: {site}: metric {metric!r} is not one of {sorted(allowed)}")
        self.sites = sites
        self.booru_file_hosts = {site: list(self.booru_file_hosts.get(site) or row.hosts)
                                 for site, row in sites.items()}  # fmt: skip
        self.normalize_metrics = {site: self.normalize_metrics.get(site) or row.effective_metric
                                  for site, row in sites.items()}  # fmt: skip
        return self

    @property
    def site_names(self) -> tuple[str, ...]:
        """The enabled sites, sorted: one scrape DAG each."""
        return tuple(sorted(name for name, row in self.sites.items() if row.enabled))

    @field_validator("alert_channels")
    @classmethod
    def _alert_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - {"log", "slack", "smtp"})
        if unknown:
            raise ValueError(f"unknown alert channel(s) {unknown}; choose from log, slack, smtp")
        return ["log", *[c for c in dict.fromkeys(value) if c != "log"]]

    @field_validator("refresh_ages_days")
    @classmethod
    def _refresh_ages(cls, value: list[int]) -> list[int]:
        if not value or any(age <= 0 for age in value):
            raise ValueError("must be a non-empty list of positive day counts, e.g. [1, 7, 30, 90, 365]")
        return sorted(set(value))

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        names = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
        if value.upper() not in names:
            raise ValueError(f"must be one of {sorted(names)}")
        return value.upper()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls))

    # Derived locations -------------------------------------------------------------------------------------------
    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def embedded_pgdata(self) -> Path:
        return self.resolved_home / "pgdata"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or (self.resolved_home / "objects").as_uri()

    def replace(self, **updates: Any) -> Settings:
        """A validated copy with some settings changed (unlike ``model_copy``, bad values raise ConfigError)."""
        return load_settings(**{**{name: getattr(self, name) for name in type(self).model_fields}, **updates})

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain values, secrets shown as ``********``."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********"
            elif isinstance(value, dict) and any(isinstance(v, SecretStr) for v in value.values()):
                value = {k: "********" for k in value}
            elif isinstance(value, Enum):
                value = value.value
            elif isinstance(value, Path):
                value = str(value)
            shown[name] = value
        shown["storage_url (effective)"] = self.effective_storage_url
        shown["database (effective)"] = (
            "external (database_url)" if self.database_url else f"embedded at {self.embedded_pgdata}"
        )
        return shown


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``pony.toml`` (or ``$PONY_CONFIG``); unknown keys are rejected by the model (extra='forbid')."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.path = config_file_path()
        self.data: dict[str, Any] = {}
        if self.path is not None:
            try:
                self.data = tomllib.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {self.path}: {exc}") from exc

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


def config_file_path() -> Path | None:
    explicit = os.environ.get(f"{ENV_PREFIX}CONFIG")
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"PONY_CONFIG points at {path}, which is not a file")
        return path
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's validation error into a :class:`ConfigError` naming each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "?"
            env_name = f"{ENV_PREFIX}{name.split('.')[0].upper()}"
            given = error.get("input")
            secret = name.split(".")[0] in SECRET_FIELDS
            given_text = "" if isinstance(given, dict) or secret else f" (got {given!r})"
            if name == "?":  # a rule across settings (sites and the per-site settings that name them)
                lines.append(str(error["msg"]).removeprefix("Value error, "))
                continue
            lines.append(f"setting {name} ({env_name} or '{name}' in pony.toml): {error['msg']}{given_text}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once. Tests and callers that need fresh values use :func:`load_settings`."""
    return load_settings()
