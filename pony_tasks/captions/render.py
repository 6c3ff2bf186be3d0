"""Captions: special tags, cleaned content tags, and the kohya keep separator between the fixed and shuffled parts.

Layout: ``<fixed part> ||| <shuffleable part>``. Under ``v6`` the quality chain leads the fixed part as one string
(as V6 captioned); under ``v7`` only the band tag is fixed and the independent ``score_K_up`` tokens go to the
shuffleable part, where each training line keeps or drops each one and shuffles them among the content tags
(``captions.lines``: a line's content fills what its own draw of quality tags leaves of the token limit).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pony_tasks.captions.lines import KEEP_SEPARATOR, Line, draw_line, draw_lines, reserved_count, split_text, up_room
from pony_tasks.captions.periods import DEFAULT_PERIODS, Periods, date_tags, periods_key
from pony_tasks.captions.quality import QualityTags
from pony_tasks.captions.tokens import (
    DEFAULT_TOKEN_LIMIT,
    cumulative_costs,
    kept_count,
    prioritised,
    tags_cost,
)
from pony_tasks.works.synonyms import common_spelling, synonyms, table_digest

RATING_TAGS = {"general": "rating_safe", "sensitive": "rating_safe", "questionable": "rating_questionable",
               "explicit": "rating_explicit"}  # fmt: skip
DEFAULT_BLACKLIST = frozenset({
    "tagme", "translation_request", "commentary_request", "bad_id", "bad_pixiv_id", "highres", "absurdres",
    "duplicate", "image_sample", "md5_mismatch", "watermark", "artist_name", "signature", "web_address",
    "safe", "suggestive", "questionable", "explicit",  # Derpibooru's rating tags: the rating_* tag says it
})  # fmt: skip
# Bump when content_tags/source_tag/clean_tag change what they produce: cached caption content is keyed by it.
CONTENT_RULES_VERSION = 4  # 2: true synonyms mapped (works/tag_synonyms.csv); 3: keep order, token costs, dates;
# 4: the count of protected tags stored (captions.lines reserves them in every line)
GROUP_ORDER = ("character", "oc", "copyright", "artist", "species", "general")
PONY_HINTS = frozenset({"pony", "my_little_pony", "my little pony"})
FURRY_HINTS = frozenset({"anthro", "furry", "feral", "canine", "feline", "fox", "wolf", "dragon"})
CARTOON_HINTS = frozenset({"cartoon", "western"})
ANIME_HINTS = frozenset({"1girl", "1boy", "2girls", "solo_focus", "anime", "original"})


SOURCE_TAGS = ("source_pony", "source_furry", "source_cartoon", "source_anime")


def source_hint(tag: str) -> int:
    """What a site tag says of the source: 1 pony, 2 furry, 3 cartoon (its lower case in that hint set), 0 nothing.
    The smallest hint of a post wins (see :func:`source_tag`)."""
    lower = tag.lower()
    return 1 if lower in PONY_HINTS else 2 if lower in FURRY_HINTS else 3 if lower in CARTOON_HINTS else 0


# A site's own source (the ``source`` of its row in settings.sites): every post of Derpibooru is pony; e621's are
# furry unless a tag says pony. Set for a caption run by :func:`use_site_sources`.
BUILT_IN_SITE_SOURCES = {"derpibooru": "source_pony", "e621": "source_furry"}
_site_ranks: dict[str, int] = {site: SOURCE_TAGS.index(tag) + 1 for site, tag in BUILT_IN_SITE_SOURCES.items()}


def use_site_sources(sources: dict[str, str | None]) -> str:
    """Each site's own source tag for the captions this process writes next ({site: source tag or None}); returns
    what cached caption content must depend on (empty for the built-in mapping)."""
    global _site_ranks
    chosen = {site: tag for site, tag in sources.items() if tag}
    unknown = sorted(set(chosen.values()) - set(SOURCE_TAGS))
    if unknown:
        raise ValueError(f"source tags {unknown} are not among {SOURCE_TAGS}")
    _site_ranks = {site: SOURCE_TAGS.index(tag) + 1 for site, tag in chosen.items()}
    if chosen == BUILT_IN_SITE_SOURCES:
        return ""
    return ";sources=" + hashlib.md5(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:12]


def source_by_hint(site: str, hint: int | None) -> str:
    """The source tag of a post on ``site`` whose strongest tag hint is ``hint`` (None or 0: none): the stronger of
    the site's own source (Derpibooru is pony, e621 furry; any site's row may name one) and the hint — pony before
    furry before cartoon; anime otherwise."""
    rank = min(_site_ranks.get(site, 9), hint or 9)
    return SOURCE_TAGS[rank - 1] if rank <= 3 else "source_anime"


def source_tag(site: str, tags: Iterable[str]) -> str:
    """``source_pony`` / ``source_furry`` / ``source_cartoon`` / ``source_anime`` from the site and its tags."""
    return source_by_hint(site, min(filter(None, map(source_hint, tags)), default=0))


def content_rules_key(
    include_artist: bool, blacklist: frozenset[str] = DEFAULT_BLACKLIST, *, frequency_snapshot: int | None = None,
    periods: Periods = DEFAULT_PERIODS,
) -> str:  # fmt: skip
    """What cached caption content depends on besides the post and its style cluster (in the digest when used;
    replace_artist shows as ``include_artist``): the rules version, the options, the synonym table, the
    tag-frequency snapshot its keep order came from and the period ranges."""
    blacklist_digest = hashlib.md5("\n".join(sorted(blacklist)).encode()).hexdigest()[:12]
    return (f"rules={CONTENT_RULES_VERSION};artist={int(include_artist)};blacklist={blacklist_digest};"
            f"synonyms={table_digest()};frequencies={frequency_snapshot};periods={periods_key(periods)}")  # fmt: skip


@functools.lru_cache(maxsize=1 << 18)
def clean_tag(tag: str) -> str:
    """Entities decoded, underscores to spaces, parentheses escaped (``\\(``) as the trainers expect."""
    text = html.unescape(tag).strip().replace("_", " ")
    text = re.sub(r"\s+", " ", text)
    return text.replace("(", "\\(").replace(")", "\\)")


def content_tags(
    tag_groups: dict[str, list[str]], tags: Iterable[str], *, include_artist: bool = True,
    blacklist: frozenset[str] = DEFAULT_BLACKLIST,
) -> list[str]:  # fmt: skip
    """Content tags ordered character, OC, copyright, artist (optional), then the other groups and the ungrouped
    tags; sites without categories fall back to the flat tag list (sorted). Derpibooru prefixes (``artist:``) are
    dropped from the text, its rating tags removed. Tags in other groups (``meta``, ``lore``, …) are left out."""
    return content_parts(tag_groups, tags, include_artist=include_artist, blacklist=blacklist)[0]


def content_parts(
    tag_groups: dict[str, list[str]], tags: Iterable[str], *, include_artist: bool = True,
    blacklist: frozenset[str] = DEFAULT_BLACKLIST, forms: dict[str, str | None] | None = None,
) -> tuple[list[str], int]:  # fmt: skip
    """(content tags as :func:`content_tags` orders them, how many lead it from the protected groups — characters,
    OCs, copyrights, artists; on a flat list the ``artist:``/``oc:`` tags). The hot path of regeneration: kept to
    C-level loops; ``forms`` (raw tag → caption form under ``blacklist``, filled as it goes) spares the per-tag
    function call."""
    groups = tag_groups or {}
    order = GROUP_ORDER if include_artist else _GROUP_ORDER_NO_ARTIST
    if groups:
        protected = [raw for group in order if group in PROTECTED_GROUPS for raw in groups.get(group, ())]
        rest = [raw for group in order if group not in PROTECTED_GROUPS for raw in groups.get(group, ())]
        grouped = set().union(*groups.values())
        rest += sorted(raw for raw in tags if raw not in grouped)
    else:
        flat = sorted(tags)
        protected = [raw for raw in flat if raw.startswith(("artist:", "oc:"))]
        if protected:
            named = set(protected)
            rest = [raw for raw in flat if raw not in named]
        else:
            rest = flat
    if forms is None:
        forms = {}
    for raw in set(protected).union(rest).difference(forms):
        forms[raw] = _caption_form(raw, blacklist)
    form = forms.__getitem__
    kept = [c for c in dict.fromkeys(map(form, protected)) if c]
    if not kept:
        return [c for c in dict.fromkeys(map(form, rest)) if c], 0
    seen = set(kept)
    kept += [c for c in dict.fromkeys(map(form, rest)) if c and c not in seen]
    return kept, len(seen)


def with_style(content: list[str], protected: int, style: str | None) -> tuple[list[str], int]:
    """The content with the style cluster tag first, protected (a cleaned site tag has no ``_``: never the same)."""
    return ([style, *content], protected + 1) if style else (content, protected)


PROTECTED_GROUPS = frozenset({"character", "oc", "copyright", "artist"})
_GROUP_ORDER_NO_ARTIST = tuple(g for g in GROUP_ORDER if g != "artist")


def caption_form(raw: str) -> str | None:
    """A site tag as captions write it (None: blacklisted by default)."""
    return _caption_form(raw, DEFAULT_BLACKLIST)


@functools.lru_cache(maxsize=1 << 18)
def _caption_form(raw: str, blacklist: frozenset[str]) -> str | None:
    """A site tag as it appears in captions (None if blacklisted): namespace prefix dropped, a true synonym written
    as the common vocabulary writes it (``pony_tasks.works.synonyms``: the same character on every site), cleaned."""
    prefix, colon, rest = raw.partition(":")
    name = rest if colon and prefix in ("artist", "oc") else raw
    if raw.lower() in blacklist or name.lower() in blacklist:
        return None
    name = synonyms().get(common_spelling(name), name)
    return clean_tag(name) or None


@dataclass(frozen=True)
class Caption:
    """A structured caption: what is stored per (image, aesthetic version, scheme)."""

    quality: QualityTags
    source: str
    rating: str
    content: tuple[str, ...]
    tokens: int | None = None  # the fixed part and the stored content (the line without score_K_up tags); None:
    # unbudgeted
    dropped: int = 0  # content tags left out to fit the token limit beside the fixed part alone
    date: tuple[str, ...] = ()  # year and period tags (captions.periods)
    token_limit: int | None = None  # every training line fits it (captions.lines)
    up_room: int | None = None  # score_K_up tags a line can carry beside its reserved content (captions.lines)

    def fixed_part(self) -> list[str]:
        return [*self.quality.fixed_tokens(), self.source, self.rating, *self.date]

    def render(self) -> str:
        """The stored text: every tag, the independent quality tokens listed in the shuffleable part."""
        head = ", ".join(self.quality.fixed_tokens())
        return render_text(head, self.source, self.rating, ", ".join(self.quality.flexible_tokens()), self.content,
                           ", ".join(self.date))  # fmt: skip

    def line(self, rng: random.Random, keep_probability: float = 0.5) -> Line:
        """One training line (captions.lines.draw_line): its own draw of the independent quality tags, the content
        that fits beside them."""
        return draw_line(self.fixed_part(), self.quality.flexible_tokens(), self.content, rng,
                         limit=self.token_limit, room=self.up_room, keep_probability=keep_probability)  # fmt: skip


def render_text(
    fixed_quality: str, source: str, rating: str, flexible_quality: str, content: Sequence[str], date: str = ""
) -> str:
    """``<quality>, <source>, <rating>[, <date tags>] ||| <flexible quality>, <content>`` — the one definition of
    caption text (``fixed_quality``, ``flexible_quality`` and ``date`` already joined with ``", "``; any may be
    empty)."""
    flexible = ", ".join(content)
    if flexible_quality:
        flexible = f"{flexible_quality}, {flexible}" if flexible else flexible_quality
    fixed = f"{fixed_quality}, {source}, {rating}" if fixed_quality else f"{source}, {rating}"
    if date:
        fixed = f"{fixed}, {date}"
    return f"{fixed} {KEEP_SEPARATOR} {flexible}" if flexible else f"{fixed} {KEEP_SEPARATOR}"


def build_caption(
    quality: QualityTags, site: str, rating: str, tag_groups: dict[str, list[str]], tags: Iterable[str],
    *, include_artist: bool = True, token_limit: int | None = DEFAULT_TOKEN_LIMIT,
    frequencies: Mapping[str, int] | None = None, year: int | None = None, periods: Periods = DEFAULT_PERIODS,
    style: str | None = None,
) -> Caption:  # fmt: skip
    """The caption of one post (or work). With ``token_limit`` (tokens, CLIP BPE) the content is put in keep order
    and cut to fit beside the fixed part (``captions.tokens``; ``frequencies``: live posts per caption tag, as
    ``sets.tag_frequencies`` reads them); each training line then fits its own draw of ``score_K_up`` tags
    (``captions.lines``). ``None`` keeps every tag in group order. ``year``: the upload year, for the year and
    period tags (``captions.periods``). ``style``: the work's style cluster tag (``style_cluster_N``), the first
    content tag and protected like an artist's name."""
    tags = list(tags)
    if rating not in RATING_TAGS:
        raise ValueError(f"rating {rating!r} is not one of {sorted(RATING_TAGS)}")
    source, rating_tag, date = source_tag(site, tags), RATING_TAGS[rating], date_tags(year, periods)
    content, protected = content_parts(tag_groups, tags, include_artist=include_artist)
    content, protected = with_style(content, protected, style)
    if token_limit is None:
        return Caption(quality, source, rating_tag, tuple(content), date=date)
    ordered = prioritised(content, protected, frequencies or {})
    cumulative = cumulative_costs(ordered)
    fixed = quality_cost(quality) + tags_cost((source, rating_tag, *date))
    kept = kept_count(cumulative, token_limit - fixed)
    room = up_room(token_limit, fixed, quality.flexible_tokens(), cumulative, reserved_count(ordered[:kept], protected))
    return Caption(quality, source, rating_tag, tuple(ordered[:kept]), fixed + (cumulative[kept - 1] if kept else 0),
                   len(ordered) - kept, date, token_limit, room)  # fmt: skip


def quality_cost(quality: QualityTags) -> int:
    """Tokens of the quality tags every line of this band carries: its fixed part (v7: the band tag; v6: the whole
    chain). V7's ``score_K_up`` tags are drawn per line and paid for by that line (captions.lines)."""
    return tags_cost(quality.fixed_tokens())


def sample_caption(caption: Caption, rng: random.Random, keep_probability: float = 0.5) -> str:
    """One training-step caption: the fixed part in order, then (v7) independently kept quality tokens and the
    content that fits beside them, shuffled. Seed ``rng`` per step for reproducible runs."""
    return caption.line(rng, keep_probability).plain(rng)


UP_TAG = re.compile(r"^score_[1-9]_up$")


def sample_caption_text(text: str, rng: random.Random, keep_probability: float = 0.5) -> str:
    """The train-time sampler on an exported caption (kohya's caption file): a caption of several lines (a V7
    export: :func:`pre_sampled_lines`) is sampled as kohya samples it — one line at random, its tags after ``|||``
    shuffled, none dropped (its ``score_K_up`` tags were drawn when it was written). A single line keeps each
    ``score_K_up`` tag after ``|||`` with ``keep_probability`` (a line fits the limit: dropping tags keeps it
    within). Seed ``rng`` per step for reproducible runs."""
    if "\n" in text:
        text, keep_probability = rng.choice(text.split("\n")), 1.0
    fixed, tokens = split_text(text)
    kept = [t for t in tokens if not UP_TAG.match(t) or rng.random() < keep_probability]
    rng.shuffle(kept)
    return ", ".join([*fixed, *kept])


def pre_sampled_lines(caption: Caption, count: int, seed: str, keep_probability: float = 0.5) -> list[Line]:
    """``count`` training lines of a caption, each with its own draw of the ``score_K_up`` tags and the content that
    fits beside them (captions.lines.draw_lines), for trainers that pick one line per step (kohya's
    ``enable_wildcard``) and shuffle the part after ``|||`` themselves. Seeded by ``seed`` (the image's sha256): an
    export written twice is the same. A caption without independent tags (v6, band 1) is one line."""
    return draw_lines(caption.fixed_part(), caption.quality.flexible_tokens(), caption.content, count, seed,
                      limit=caption.token_limit, room=caption.up_room, keep_probability=keep_probability)  # fmt: skip
