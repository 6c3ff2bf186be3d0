"""``pony plan``: what a first run against the configured sites will take, before it starts.

From each site's size (its newest post id asked live with ``--live``, one request a site through the polite client;
or the sizes given; or the sites' published sizes as of 2026) and our settings: the API requests and hours to page the
metadata at each site's configured rate, the daily requests of the deletion sweep (``refresh_sweep_days``), the
images and bytes to fetch and the days at the configured per-host rate, the object-store size (files and
embeddings), the embedding GPU hours at a stated images/s per GPU, and the database size. Every figure names its
assumption (:attr:`Plan.assumptions`); the ones we have not measured say so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from pony_tasks.boorus.adapters import adapter_for
from pony_tasks.config import Settings

# The sites' sizes as the issue tracker gives them for 2026 (posts, deleted included): the default when nothing
# better is known. ``--live`` or ``--posts SITE=N`` replace them.
PUBLISHED_POSTS = {"danbooru": 9_000_000, "gelbooru": 11_000_000, "e621": 5_000_000, "derpibooru": 3_500_000}
DELETED_SHARE = 0.03  # posts without a file to fetch (deleted or hidden): an assumption
MEAN_FILE_MIB = 1.5  # mean original file size: an assumption (booru originals, mostly PNG/JPEG)
# Database bytes per post: benchmarks/scale.py's 10M corpus (posts, two score snapshots, images with their
# signatures, ratings) took 48.6 GiB on disk of which 14.3 GiB were the fp16 embeddings: ~3.7 KB a post.
DATABASE_BYTES_PER_POST = 3_700
EMBEDDING_DIMENSIONS = {"ViT-B-32": 512, "ViT-B-16": 512, "ViT-L-14": 768, "ViT-L-14-336": 768, "ViT-H-14": 1024,
                        "ViT-bigG-14": 1280}  # fmt: skip
GPU_IMAGES_PER_SECOND = 400.0  # ViT-L-14 fp16 on one H100: an assumption until benchmarks/embed.py runs on one


@dataclass
class SitePlan:
    site: str
    posts: int
    size_from: str  # "live (newest id)", "given", "published (2026)"
    api_rate: float  # requests/s
    page_limit: int
    metadata_requests: int
    metadata_hours: float
    sweep_requests_per_day: int
    sweep_minutes_per_day: float
    images: int
    image_gib: float
    image_host_rate: float
    fetch_days: float


@dataclass
class Plan:
    sites: list[SitePlan]
    embed_model: str
    embedding_gib: float
    object_store_gib: float
    database_gib: float
    gpu_hours: float
    gpu_images_per_second: float
    assumptions: list[str] = field(default_factory=list)

    @property
    def images(self) -> int:
        return sum(site.images for site in self.sites)

    def as_dict(self) -> dict:
        return {**asdict(self), "images": self.images}

    def table(self) -> str:
        lines = [f"{'site':11s} {'posts':>12s} {'from':18s} {'API req':>10s} {'paging':>9s} {'sweep/day':>14s} "
                 f"{'images':>12s} {'files':>10s} {'fetch':>9s}"]  # fmt: skip
        for s in self.sites:
            lines.append(f"{s.site:11s} {s.posts:>12,} {s.size_from:18s} {s.metadata_requests:>10,} "
                         f"{s.metadata_hours:>7.1f} h {s.sweep_requests_per_day:>6,} "
                         f"({s.sweep_minutes_per_day:3.0f} m) "
                         f"{s.images:>12,} {s.image_gib:>6,.0f} GiB {s.fetch_days:>6.1f} d")  # fmt: skip
        slowest = max(self.sites, key=lambda s: s.fetch_days) if self.sites else None
        lines += [
            "",
            f"images to fetch: {self.images:,}; the sites are fetched at once, so the fetch takes as long as the "
            f"slowest site: {slowest.fetch_days:.1f} days ({slowest.site})" if slowest else "no site configured",
            f"object store: {self.object_store_gib / 1024:,.1f} TiB (files, and {self.embedding_gib:,.0f} GiB of "
            f"{self.embed_model} embeddings in fp16)",
            f"database: {self.database_gib:,.0f} GiB",
            f"embedding: {self.gpu_hours:,.1f} GPU hours at {self.gpu_images_per_second:,.0f} images/s per GPU",
            "",
            "assumptions:",
            *(f"  - {a}" for a in self.assumptions),
        ]
        return "\n".join(lines)


def newest_post_id(site: str, settings: Settings) -> int:
    """The site's newest post id: one request for its newest page, through the site's polite client (its rate
    limit, User-Agent and credentials)."""
    from pony_tasks.boorus.engine import make_client

    adapter = adapter_for(site, settings)
    refusal = adapter.refusal(settings)
    if refusal:
        raise RuntimeError(f"cannot ask {site}: {refusal}")
    client = make_client(adapter, settings)
    try:
        request = adapter.older_than(None)
        body, _ = client.get_json(adapter.base_url + request.path, request.params, auth=request.auth)
        ids = [i for i in (adapter.record_id(raw) for raw in adapter.records(body)) if i is not None]
    finally:
        client.limiter.disconnect()
    if not ids:
        raise RuntimeError(f"{site}'s newest page held no post")
    return max(ids)


def make_plan(
    settings: Settings,
    sites: list[str] | None = None,
    posts: dict[str, int] | None = None,
    live: bool = False,
    mean_file_mib: float = MEAN_FILE_MIB,
    gpu_images_per_second: float = GPU_IMAGES_PER_SECOND,
) -> Plan:
    """The plan for ``sites`` (default: every site). ``posts`` gives sizes; ``live`` asks each other site for its
    newest id; the rest use :data:`PUBLISHED_POSTS`."""
    from pony_tasks.boorus.engine import sweep_pages

    posts = posts or {}
    rows, unsized = [], []
    for site in sites or settings.site_names:
        adapter = adapter_for(site, settings)
        if site in posts:
            count, source = posts[site], "given"
        elif live:
            count, source = newest_post_id(site, settings), "live (newest id)"
        elif site in PUBLISHED_POSTS:
            count, source = PUBLISHED_POSTS[site], "published (2026)"
        else:  # a configured site whose size we do not know
            unsized.append(site)
            continue
        rate = settings.booru_rate_limits.get(site, adapter.default_rate_per_second)
        requests = math.ceil(count / adapter.page_limit)
        sweep = sweep_pages(count, adapter.page_limit, settings)
        images = round(count * (1 - DELETED_SHARE))
        host_rate = settings.image_host_rate_limit
        rows.append(SitePlan(
            site=site, posts=count, size_from=source, api_rate=rate, page_limit=adapter.page_limit,
            metadata_requests=requests, metadata_hours=requests / rate / 3600, sweep_requests_per_day=sweep,
            sweep_minutes_per_day=sweep / rate / 60, images=images, image_gib=images * mean_file_mib / 1024,
            image_host_rate=host_rate, fetch_days=images / host_rate / 86_400,
        ))  # fmt: skip
    images = sum(row.images for row in rows)
    dimension = EMBEDDING_DIMENSIONS.get(settings.embed_model, 768)
    embedding_gib = images * dimension * 2 / 2**30
    total_posts = sum(row.posts for row in rows)
    assumptions = [
        "posts: " + ", ".join(f"{r.site} {r.size_from}" for r in rows) + " (a newest id counts deleted posts too)"
        + (f"; left out, size unknown: {', '.join(unsized)} (give --posts SITE=N or --live)" if unsized else ""),
        "metadata: one request per page of the site's page size (Danbooru 200, e621 320, Derpibooru 50, Gelbooru "
        "100) at the site's configured rate (booru_rate_limits); tag-category and single-post lookups not counted",
        f"deletion sweep: every stored post within refresh_sweep_days = {settings.refresh_sweep_days:g} days, one "
        "refresh run a day",
        f"images: {1 - DELETED_SHARE:.0%} of the posts have a file to fetch; mean file {mean_file_mib:g} MiB "
        "(--mean-file-mib); one file host per site at image_host_rate_limit = "
        f"{settings.image_host_rate_limit:g}/s",
        f"embeddings: {settings.embed_model}, {dimension} dimensions, fp16",
        f"embedding speed: {gpu_images_per_second:g} images/s per GPU (--gpu-images-per-second) — not measured by "
        "us on a GPU yet: replace it with benchmarks/embed.py's figure from your GPU",
        f"database: {DATABASE_BYTES_PER_POST:,} bytes a post (benchmarks/scale.py's 10M corpus), before works, "
        "captions and rating history",
    ]
    return Plan(
        sites=rows, embed_model=settings.embed_model, embedding_gib=embedding_gib,
        object_store_gib=sum(row.image_gib for row in rows) + embedding_gib,
        database_gib=total_posts * DATABASE_BYTES_PER_POST / 2**30,
        gpu_hours=images / gpu_images_per_second / 3600, gpu_images_per_second=gpu_images_per_second,
        assumptions=assumptions,
    )  # fmt: skip
