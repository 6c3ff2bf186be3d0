"""A deterministic sample corpus: posts on four sites with generated images of planted quality.

Everything follows from ``seed`` and ``reference_time``. Each post has a planted ``quality`` in [0, 1] (the truth
the aesthetic model should recover); its image carries a defect whose strength falls with quality. Popularity
follows quality loosely and rating and age strongly: a post's score at time t is its mature score times
``1 - exp(-age_days / 20)``. A small slice of posts has bad files (corrupt, truncated, wrong hash, not an image,
a decompression bomb, oversized) and a few records break their site's schema on purpose. About 1.5 % of posts are
deleted some days after upload (``deleted_at``, never after ``reference_time``); each fake site hides them the
way the real site does (see ``pony_tasks.fakes.server``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

from PIL import Image, ImageDraw, ImageOps, ImageStat

from pony_tasks.fakes.images import (
    DEFECTS,
    STYLES,
    decompression_bomb_png,
    degrade,
    encode,
    oversized_png,
    render_image,
)

DEFAULT_SEED = 621
DEFAULT_REFERENCE_TIME = datetime(2026, 11, 1, tzinfo=UTC)
SITE_ORDER = ("danbooru", "e621", "derpibooru", "gelbooru")
BAD_FILE_KINDS = ("corrupt", "truncated", "wrong_hash", "not_image", "bomb", "oversized")
MATURITY_DAYS = 20.0

# How each site's popularity is scaled and which ratings it uses.
SITE_SCALE = {"danbooru": 25.0, "e621": 60.0, "derpibooru": 220.0, "gelbooru": 12.0}
SITE_RATINGS = {
    "danbooru": ("general", "sensitive", "questionable", "explicit"),
    "e621": ("general", "questionable", "explicit"),
    "derpibooru": ("general", "sensitive", "questionable", "explicit"),
    "gelbooru": ("general", "sensitive", "questionable", "explicit"),
}
RATING_WEIGHTS = {"general": 0.45, "sensitive": 0.2, "questionable": 0.15, "explicit": 0.2}
RATING_POPULARITY = {"general": 1.0, "sensitive": 1.6, "questionable": 2.4, "explicit": 3.5}

ARTISTS = ["inkwell", "pastel_dream", "mossy_rock", "sunbeam", "night_owl", "paperplane", "cobalt", "quill"]
CHARACTERS = [
    "twilight_sparkle",
    "rainbow_dash",
    "fluttershy",
    "rarity",
    "applejack",
    "pinkie_pie",
    "original_character",
]
COPYRIGHTS = ["my_little_pony", "original", "friendship_is_magic"]
GENERAL = [
    "solo", "smile", "looking_at_viewer", "outdoors", "sky", "cloud", "flower", "tree", "wings", "horn", "blush",
    "open_mouth", "simple_background", "white_background", "standing", "sitting", "flying", "sunset", "night",
    "rain", "snow", "book", "cute", "happy", "duo", "group", "portrait", "full_body", "detailed_background",
]  # fmt: skip
SPECIES = ["pony", "unicorn", "pegasus", "earth_pony", "alicorn", "dragon"]


# Planted near-duplicates (issue 15): this share of each site's posts re-posts a Danbooru picture, altered one way;
# HARD_NEGATIVE_SHARE of the posts are another picture that looks like one (a different work): another artist's
# colour swap, the next frame of a sequence, the same composition re-drawn in another style; VARIANT_SHARE are the
# same artist's alternate-colour version (linked as a variant, not the same work).
COPY_SHARE = {"gelbooru": 0.10, "e621": 0.04, "derpibooru": 0.04}
HARD_NEGATIVE_SHARE = 0.015
VARIANT_SHARE = 0.005
COPY_ALTERATIONS = ("resized", "jpeg_reencode", "png_jpeg_swap", "border", "cropped", "signature")
HARD_NEGATIVES = ("colour_swap", "sequence_frame", "redrawn")
VARIANT = "alternate_colours"
# a re-drawing of a coloured picture as line art, of line art in colour (painterly over flat is the same picture
# filtered, not re-drawn)
REDRAWN_STYLE = {"flat": "sketch", "sketch": "flat", "painterly": "sketch", "pixel": "sketch", "shaded": "sketch"}


def crop_margins(width: int, height: int, seed: int) -> tuple[int, int]:
    """Pixels a re-poster's crop takes off each side: 2–6 % of the picture, drawn per post."""
    share = random.Random(f"{seed}:crop").uniform(0.02, 0.06)
    return max(1, round(width * share)), max(1, round(height * share))


def altered_size(width: int, height: int, alteration: str | None, seed: int = 0) -> tuple[int, int]:
    if alteration == "resized":
        return max(16, width * 3 // 4), max(16, height * 3 // 4)
    if alteration == "border":
        return width + 8, height + 8
    if alteration == "cropped":
        dx, dy = crop_margins(width, height, seed)
        return width - 2 * dx, height - 2 * dy
    return width, height


def _next_frame(image: Image.Image, seed: int) -> Image.Image:
    """The next frame of a sequence: the same scene with its subject (the most detailed third of the picture among a
    few tried) moved on by its own width."""
    rng = random.Random(seed)
    frame = image.copy()
    w, h = image.width // 3, image.height // 3
    boxes = [(x, y, x + w, y + h) for x, y in ((rng.randrange(image.width - w), rng.randrange(image.height - h))
                                               for _ in range(8))]  # fmt: skip
    box = max(boxes, key=lambda b: ImageStat.Stat(image.crop(b).convert("L")).stddev[0])
    dx = w if box[0] + 2 * w <= image.width else -w
    frame.paste(image.crop(box), (box[0] + dx, box[1]))
    return frame


def alter(image: Image.Image, alteration: str | None, jpeg_quality: int, seed: int) -> tuple[Image.Image, int]:
    """A re-post's change to the picture: resized, re-encoded, PNG↔JPEG (by the file type), a border, a small crop,
    a signature;
    or another picture like it: its colours swapped (another artist's edit, or the artist's own alternate version),
    the next frame of its sequence. (A re-drawing is rendered anew: see ``SampleCorpus._make_file``.)"""
    if alteration == "resized":
        image = image.resize(altered_size(image.width, image.height, alteration), Image.LANCZOS)
    elif alteration == "jpeg_reencode":
        jpeg_quality = 55 if jpeg_quality > 70 else 85
    elif alteration == "border":
        image = ImageOps.expand(image, border=4, fill=(255, 255, 255))
    elif alteration == "cropped":  # 2–6 % off every side
        dx, dy = crop_margins(image.width, image.height, seed)
        image = image.crop((dx, dy, image.width - dx, image.height - dy))
    elif alteration == "signature":
        image = image.copy()
        ImageDraw.Draw(image).text((2, image.height - 11), "sig", fill=(250, 250, 250))
    elif alteration in ("colour_swap", VARIANT):
        image = Image.merge("RGB", image.split()[::-1])
    elif alteration == "sequence_frame":
        image = _next_frame(image, seed)
    return image, jpeg_quality


@dataclass(frozen=True)
class CorpusPost:
    site: str
    post_id: int
    created_at: datetime
    rating: str
    quality: float
    style: str
    defect: str
    popularity: float  # mature popularity before site scaling
    artist: str
    characters: tuple[str, ...]
    copyright: str
    species: tuple[str, ...]
    general: tuple[str, ...]
    width: int
    height: int
    file_ext: str
    image_seed: int
    bad_file: str | None = None
    deleted: bool = False  # deleted by the site at ``deleted_at`` (by ``reference_time`` at the latest)
    deleted_at: datetime | None = None
    hidden: bool = False  # e621: file.url null for this caller
    broken_record: bool = False  # rendered so that it breaks the site's schema
    down_share: float = 0.1
    # A re-post of another site's picture (the same work: issue 15), altered as boorus alter them; or a hard
    # negative — a picture that looks like it (not the same work); or its artist's alternate version (a variant).
    # None: an original picture.
    copy_of: tuple[str, int] | None = None
    alteration: str | None = None  # one of COPY_ALTERATIONS or HARD_NEGATIVES, or VARIANT

    def is_deleted_at(self, now: datetime) -> bool:
        return self.deleted and self.deleted_at is not None and self.deleted_at <= now

    @property
    def all_tags(self) -> list[str]:
        return [self.artist, *self.characters, self.copyright, *self.species, *self.general]

    def mature_votes(self) -> tuple[int, int, int]:
        """(up, down, favourites) once the post has matured."""
        scale = SITE_SCALE[self.site]
        favorites = int(round(self.popularity * scale))
        up = int(round(favorites * 1.3 + self.popularity * 2))
        down = int(round(up * self.down_share))
        return up, down, favorites

    def votes_at(self, now: datetime) -> tuple[int, int, int]:
        age_days = max(0.0, (now - self.created_at).total_seconds() / 86400)
        grown = 1 - math.exp(-age_days / MATURITY_DAYS)
        return tuple(int(round(v * grown)) for v in self.mature_votes())  # type: ignore[return-value]


@dataclass
class FileBytes:
    data: bytes
    md5: str  # what the site's metadata claims (wrong for 'wrong_hash' posts)
    sha512: str


@dataclass
class SampleCorpus:
    seed: int = DEFAULT_SEED
    posts_per_site: int = 520
    reference_time: datetime = DEFAULT_REFERENCE_TIME
    young_share: float = 0.06  # posts younger than 30 days at reference time
    recent_share: float = 0.3  # posts from the year before that
    _files: dict[tuple[str, int], FileBytes] = field(default_factory=dict, repr=False)

    @cached_property
    def posts(self) -> list[CorpusPost]:
        rng = random.Random(self.seed)
        posts: list[CorpusPost] = []
        for site_index, site in enumerate(SITE_ORDER):
            created = self._creation_times(rng, self.posts_per_site)
            post_id = 1000 * (site_index + 1) + rng.randint(0, 50)
            bad_slots = set(rng.sample(range(self.posts_per_site), 2 * len(BAD_FILE_KINDS)))
            bad_kinds = dict(zip(sorted(bad_slots), BAD_FILE_KINDS * 2, strict=True))
            broken_slots = set(rng.sample(sorted(set(range(self.posts_per_site)) - bad_slots), 3))
            for index, created_at in enumerate(created):
                post_id += rng.randint(1, 4)  # ids have gaps, as on real sites
                posts.append(self._post(rng, site, post_id, created_at, bad_kinds.get(index), index in broken_slots))
        return self._plant_copies(posts)

    def _plant_copies(self, posts: list[CorpusPost]) -> list[CorpusPost]:
        """Re-posts of Danbooru pictures on the other sites (Gelbooru mirrors much; artists cross-post), each altered
        one way, and a few hard negatives and variants (on those sites too: a source is never itself planted). Drawn
        from generators of their own, so every other draw stays as it was; the copy takes the picture's seed, style,
        defect and quality (it is the same picture) and a re-post its artist."""
        sources = [p for p in posts if p.site == "danbooru" and p.bad_file is None and not p.broken_record]
        planted = []
        for post in posts:
            share = COPY_SHARE.get(post.site, 0.0)
            draw = random.Random(f"{self.seed}:{post.site}:{post.post_id}:copy")
            if post.bad_file is not None or post.broken_record or not sources or post.site == "danbooru":
                planted.append(post)
                continue
            roll = draw.random()
            if roll < share + HARD_NEGATIVE_SHARE + VARIANT_SHARE:
                source = sources[draw.randrange(len(sources))]
                if (source.site, source.post_id) == (post.site, post.post_id):
                    planted.append(post)
                    continue
                if roll < share:
                    alteration = draw.choice(COPY_ALTERATIONS)
                elif roll < share + HARD_NEGATIVE_SHARE:
                    alteration = draw.choice(HARD_NEGATIVES)
                else:
                    alteration = VARIANT
                if alteration in ("colour_swap", VARIANT) and source.style == "sketch":
                    # a recolour needs colour: line art on paper is grey (its "colour swap" looks the same)
                    coloured = [p for p in sources if p.style != "sketch"]
                    source = coloured[draw.randrange(len(coloured))]
                width, height = altered_size(source.width, source.height, alteration, source.image_seed)
                file_ext = ({"png": "jpg", "jpg": "png"}[source.file_ext] if alteration == "png_jpeg_swap"
                            else source.file_ext)  # fmt: skip
                artist = source.artist if alteration in (*COPY_ALTERATIONS, VARIANT) else post.artist
                if artist == source.artist and alteration in HARD_NEGATIVES:
                    artist = next(a for a in ARTISTS if a != source.artist)  # another artist's picture
                style = REDRAWN_STYLE[source.style] if alteration == "redrawn" else source.style
                post = dataclasses.replace(post, image_seed=source.image_seed, style=style,
                                           defect=source.defect, quality=source.quality, width=width, height=height,
                                           file_ext=file_ext, copy_of=(source.site, source.post_id),
                                           alteration=alteration, artist=artist)  # fmt: skip
            planted.append(post)
        return planted

    def copies(self) -> list[CorpusPost]:
        """The planted re-posts, hard negatives and variants (the truth near-duplicate matching is scored on)."""
        return [p for p in self.posts if p.copy_of is not None]

    def _creation_times(self, rng: random.Random, count: int) -> list[datetime]:
        """Upload times: a few very young posts, a busy recent year (boorus grow), and a long older tail."""
        start = datetime(2012, 1, 1, tzinfo=UTC)
        recent_start = self.reference_time - timedelta(days=395)
        times = []
        for _ in range(count):
            roll = rng.random()
            if roll < self.young_share:
                times.append(self.reference_time - timedelta(seconds=rng.uniform(3600, 29 * 86400)))
            elif roll < self.young_share + self.recent_share:
                times.append(recent_start + timedelta(days=rng.uniform(0, 365)))
            else:
                span = (recent_start - start).total_seconds()
                times.append(start + timedelta(seconds=span * rng.random() ** 0.7))
        return sorted(times)

    def _post(
        self, rng: random.Random, site: str, post_id: int, created_at: datetime, bad_file: str | None, broken: bool
    ) -> CorpusPost:
        ratings = SITE_RATINGS[site]
        rating = rng.choices(ratings, weights=[RATING_WEIGHTS[r] for r in ratings])[0]
        quality = rng.betavariate(2.2, 2.2)
        defect = "none" if quality > 0.9 else rng.choice(DEFECTS[1:])
        # Popularity: quality loosely (with heavy noise), rating strongly, a slight upward drift for newer cohorts.
        year_drift = 1 + 0.04 * (created_at.year - 2012)
        popularity = math.exp(2.2 * quality + rng.gauss(0, 0.6)) * RATING_POPULARITY[rating] * year_drift * 0.25
        if rng.random() < 0.04:
            popularity = 0.0  # never voted on
        post = CorpusPost(
            site=site,
            post_id=post_id,
            created_at=created_at.replace(microsecond=0),
            rating=rating,
            quality=round(quality, 4),
            style=rng.choice(STYLES),
            defect=defect,
            popularity=popularity,
            artist=rng.choice(ARTISTS),
            characters=tuple(sorted(rng.sample(CHARACTERS, rng.randint(1, 2)))),
            copyright=rng.choice(COPYRIGHTS),
            species=tuple(sorted(rng.sample(SPECIES, rng.randint(1, 2)))),
            general=tuple(sorted(rng.sample(GENERAL, rng.randint(3, 8)))),
            width=rng.choice((64, 80, 96, 112, 128)),
            height=rng.choice((64, 80, 96, 112, 128)),
            file_ext=rng.choice(("png", "jpg", "jpg")),
            image_seed=rng.randrange(2**31),
            bad_file=bad_file,
            deleted=bad_file is None and not broken and rng.random() < 0.015,
            hidden=site == "e621" and bad_file is None and rng.random() < 0.02,
            broken_record=broken,
            down_share=rng.choice((0.02, 0.05, 0.1, 0.2, 0.6, 1.3)),  # some posts end up net-negative
        )
        # When posts are deleted: their own generator, so the corpus's other draws stay as they were.
        if post.deleted:  # soon after upload (a rule violation caught by the queue)
            after = timedelta(days=random.Random(f"{self.seed}:{site}:{post_id}:deleted").uniform(1, 90))
            return dataclasses.replace(
                post, deleted_at=min(post.created_at + after, self.reference_time - timedelta(hours=1))
            )
        late = random.Random(f"{self.seed}:{site}:{post_id}:late")
        if bad_file is None and not broken and late.random() < 0.015:  # years later (a takedown, a duplicate)
            when = self.reference_time - timedelta(days=late.uniform(1, 60))
            if post.created_at < when:
                return dataclasses.replace(post, deleted=True, deleted_at=when)
        return post

    def by_site(self, site: str) -> list[CorpusPost]:
        return [p for p in self.posts if p.site == site]

    def file(self, post: CorpusPost) -> FileBytes:
        """The bytes the site serves for a post (generated on first use, then cached)."""
        key = (post.site, post.post_id)
        if key not in self._files:
            self._files[key] = self._make_file(post)
        return self._files[key]

    def _make_file(self, post: CorpusPost) -> FileBytes:
        if post.copy_of is not None:
            source = next(p for p in self.posts if (p.site, p.post_id) == post.copy_of)
            image = render_image(source.image_seed, source.width, source.height, post.style)  # redrawn: another
            image, jpeg_quality = degrade(image, source.defect, source.quality, source.image_seed)
            image, jpeg_quality = alter(image, post.alteration, jpeg_quality, post.image_seed)
            data = encode(image, "png" if post.file_ext == "png" else "jpg", jpeg_quality)
            if data == self.file(source).data:  # a re-encode that came out byte-identical: still a new file
                image.putpixel((0, 0), tuple((c + 1) % 256 for c in image.getpixel((0, 0))))
                data = encode(image, "png" if post.file_ext == "png" else "jpg", jpeg_quality)
            return FileBytes(data, hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest())
        image = render_image(post.image_seed, post.width, post.height, post.style)
        image, jpeg_quality = degrade(image, post.defect, post.quality, post.image_seed)
        data = encode(image, "png" if post.file_ext == "png" else "jpg", jpeg_quality)
        claimed = data
        if post.bad_file == "corrupt":
            data = data[:20] + bytes(random.Random(post.image_seed).randrange(256) for _ in range(len(data) - 20))
            claimed = data
        elif post.bad_file == "truncated":
            data = data[: len(data) // 2]
            claimed = data
        elif post.bad_file == "wrong_hash":
            claimed = data + b"x"
        elif post.bad_file == "not_image":
            data = b"<!doctype html><html><body>404 Not Found</body></html>"
            claimed = data
        elif post.bad_file == "bomb":
            data = decompression_bomb_png()
            claimed = data
        elif post.bad_file == "oversized":
            data = oversized_png(post.image_seed)
            claimed = data
        return FileBytes(data, hashlib.md5(claimed).hexdigest(), hashlib.sha512(claimed).hexdigest())

    def planted_quality(self) -> dict[tuple[str, int], float]:
        """The ground truth for synthetic 'human' ratings (clearly synthetic: derived from how images were made)."""
        return {(p.site, p.post_id): p.quality for p in self.posts}
