"""Training lines: the caption one training step sees, drawn from a stored caption within the token limit (issue 26).

A stored V7 caption holds its fixed part (band tag, source, rating, date tags), every ``score_K_up`` tag its band can
carry, and its content in keep order (``captions.tokens``), cut to what fits beside the fixed part alone. A line
draws each ``score_K_up`` tag independently (``keep_probability``) and gives the rest of the limit to content in keep
order: the budget is spent on the quality tags the line really carries, not reserved for all eight of band 9.

Never given up for an optional quality tag: the *reserved* content — the protected tags (style cluster, characters,
OCs, copyrights, artists) and at least one content tag beside a lone style cluster tag. When a draw leaves no room
for it, drawn ``score_K_up`` tags are removed at random until it fits: a caption's ``up_room`` is how many fit (every
``score_K_up`` tag costs the same tokens), and the caption set counts the captions whose lines may be thinned so
(``caption_set.captions_thinnable``).

Every line is within the limit as CLIP counts it however its flexible part is shuffled (the count of
``captions.tokens``: each tag with its comma). A V6 caption, or a band without ``score_K_up`` tags, is one line.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from pony_tasks.captions.quality import draw_up_tags
from pony_tasks.captions.tokens import cumulative_costs, kept_count, tag_cost, tags_cost

KEEP_SEPARATOR = "|||"
STYLE_PREFIX = "style_cluster_"  # styles.style_tag; a cleaned site tag has no "_", so never one of these


def has_content(content: Sequence[str]) -> bool:
    """Whether a caption's content says what is pictured: a tag beside the style cluster tag."""
    return any(not tag.startswith(STYLE_PREFIX) for tag in content)


def reserved_count(content: Sequence[str], protected: int) -> int:
    """How many content tags (a prefix in keep order) a line keeps before any optional quality tag: the protected
    ones, and one more when the only protected tag is the style cluster tag (a style alone says nothing of what
    is pictured)."""
    at_least = 2 if content and content[0].startswith(STYLE_PREFIX) else 1
    return min(len(content), max(protected, at_least))


def up_tag_cost(up_tags: Sequence[str]) -> int:
    """What one ``score_K_up`` tag costs (the dearest of them: all cost the same in CLIP's vocabulary)."""
    return max(map(tag_cost, up_tags), default=0)


def up_room(
    limit: int, fixed_cost: int, up_tags: Sequence[str], cumulative: Sequence[int], reserved: int
) -> int | None:  # fmt: skip
    """How many of ``up_tags`` a line can carry beside its fixed part (``fixed_cost`` tokens) and its reserved
    content (``cumulative``: running cost of the content in keep order); None when there are none to carry.
    The same number as caption_set's INSERT computes in SQL (``sets.INSERT_CAPTIONS``)."""
    if not up_tags:
        return None
    room = limit - fixed_cost - (cumulative[reserved - 1] if reserved else 0)
    return min(len(up_tags), max(0, room // up_tag_cost(up_tags)))


@dataclass(frozen=True)
class Line:
    """One training caption: the fixed part (kept first, in order) and the flexible part (its drawn quality tags,
    then content in keep order; a trainer shuffles it)."""

    fixed: tuple[str, ...]
    flexible: tuple[str, ...]
    thinned: bool = False  # fewer score_K_up tags than drawn, to keep the reserved content
    ups: int = 0  # how many of the flexible tags are score_K_up tags (they lead it)
    tokens: int | None = None  # what the line costs (captions.tokens; None: drawn without a limit)

    def kohya(self) -> str:
        """``fixed ||| flexible`` — kohya's ``keep_tokens_separator`` form (kohya shuffles the flexible part)."""
        flexible = ", ".join(self.flexible)
        return f"{', '.join(self.fixed)} {KEEP_SEPARATOR} {flexible}" if flexible else (
            f"{', '.join(self.fixed)} {KEEP_SEPARATOR}")  # fmt: skip

    def plain(self, rng: random.Random) -> str:
        """The line as a trainer that does not shuffle should see it: the fixed part, then the flexible part
        shuffled by ``rng``, joined with ``", "`` (no separator)."""
        draw = rng.random
        return ", ".join([*self.fixed, *sorted(self.flexible, key=lambda _tag: draw())])  # a shuffle, ~2× cheaper

    def content_tags(self) -> int:
        """How many of the flexible tags are content: neither a ``score_K_up`` tag nor the style cluster tag (the
        first content tag when there is one)."""
        styled = len(self.flexible) > self.ups and self.flexible[self.ups].startswith(STYLE_PREFIX)
        return len(self.flexible) - self.ups - styled


def draw_line(
    fixed: Sequence[str], up_tags: Sequence[str], content: Sequence[str], rng: random.Random, *,
    limit: int | None, room: int | None, keep_probability: float = 0.5,
) -> Line:  # fmt: skip
    """One line: each of ``up_tags`` kept with ``keep_probability``, at most ``room`` of them (None: no bound; the
    removed ones chosen at random), then the longest keep-order prefix of ``content`` within ``limit`` (None: all)."""
    return _Drawer(fixed, up_tags, content, limit).draw(rng, room, keep_probability)


def draw_lines(
    fixed: Sequence[str], up_tags: Sequence[str], content: Sequence[str], count: int, seed: str, *,
    limit: int | None, room: int | None, keep_probability: float = 0.5,
) -> list[Line]:  # fmt: skip
    """``count`` lines, each with its own draw (seeded by ``seed``, the image's sha256: written twice, the same);
    one line when there are no ``up_tags`` to draw."""
    drawer, rng = _Drawer(fixed, up_tags, content, limit), random.Random(seed)
    if not up_tags:
        return [drawer.draw(rng, None, keep_probability)]
    return [drawer.draw(rng, room, keep_probability) for _ in range(count)]


class _Drawer:
    """The costs of one caption's tags, counted once for all its lines."""

    def __init__(self, fixed: Sequence[str], up_tags: Sequence[str], content: Sequence[str], limit: int | None):
        self.fixed, self.up_tags, self.content, self.limit = tuple(fixed), tuple(up_tags), tuple(content), limit
        if limit is not None:
            self.budget = limit - tags_cost(fixed)
            self.up_costs = {tag: tag_cost(tag) for tag in up_tags}
            self.cumulative = cumulative_costs(content)

    def draw(self, rng: random.Random, room: int | None, keep_probability: float) -> Line:
        drawn = draw_up_tags(self.up_tags, rng, keep_probability)
        thinned = room is not None and len(drawn) > room
        if thinned:
            drawn = [drawn[i] for i in sorted(rng.sample(range(len(drawn)), room))]
        if self.limit is None:
            return Line(self.fixed, (*drawn, *self.content), thinned, len(drawn))
        budget = self.budget - sum(map(self.up_costs.__getitem__, drawn))
        kept = kept_count(self.cumulative, budget)
        tokens = self.limit - budget + (self.cumulative[kept - 1] if kept else 0)
        return Line(self.fixed, (*drawn, *self.content[:kept]), thinned, len(drawn), tokens)


def split_text(text: str) -> tuple[list[str], list[str]]:
    """(fixed tags, flexible tags) of one caption line ``fixed ||| flexible``. Tags are split on ``", "``, which
    cleaned tags never contain."""
    fixed, separator, flexible = text.partition(f" {KEEP_SEPARATOR}")
    flexible_tags = [t for t in flexible.strip().split(", ") if t] if separator else []
    return [t for t in fixed.split(", ") if t], flexible_tags


@dataclass
class LineStats:
    """What the lines of an export hold, per band: content tags a line (the style cluster tag not counted; a
    histogram: bounded, whatever the size),
    lines without content although their caption has some, lines thinned, the most tokens a line costs."""

    content_per_line: dict[int, dict[int, int]] = field(default_factory=dict)  # band → {content tags: lines}
    without_content: int = 0
    thinned: int = 0
    lines: int = 0
    most_tokens: int = 0

    def add(self, band: int, lines: Sequence[Line], has_content: bool) -> None:
        """Count ``lines`` of a band-``band`` caption (``has_content``: its content holds more than a style tag)."""
        histogram = self.content_per_line.setdefault(band, {})
        for line in lines:
            count = line.content_tags()
            histogram[count] = histogram.get(count, 0) + 1
            self.without_content += has_content and count == 0
            self.thinned += line.thinned
            tokens = line.tokens if line.tokens is not None else tags_cost(line.fixed) + tags_cost(line.flexible)
            self.most_tokens = max(self.most_tokens, tokens)
        self.lines += len(lines)

    def median(self, bands: Sequence[int]) -> float | None:
        """The median content tags a line over ``bands`` (None: no line)."""
        merged: dict[int, int] = {}
        for band in bands:
            for count, lines in self.content_per_line.get(band, {}).items():
                merged[count] = merged.get(count, 0) + lines
        total = sum(merged.values())
        if not total:
            return None
        ordered, seen, middle = sorted(merged.items()), 0, []
        for count, lines in ordered:  # the (total+1)//2-th and (total+2)//2-th values
            for rank in {(total + 1) // 2, (total + 2) // 2}:
                if seen < rank <= seen + lines:
                    middle.append(count)
            seen += lines
        return sum(middle) / len(middle)

    def as_dict(self) -> dict:
        return {"lines": self.lines, "lines_thinned": self.thinned, "lines_without_content": self.without_content,
                "most_tokens": self.most_tokens,
                "median_content_tags_by_band": {band: self.median([band]) for band in sorted(self.content_per_line)}}
