"""The text encoder's token budget for captions (issue 16).

CLIP's text encoder reads 77 tokens: a start token, 75 caption tokens, an end token; kohya's ``max_token_length``
150 or 225 joins two or three such windows. A longer caption is silently cut at the end, so the tags that lose are
whichever come last. Captions are therefore made to fit before they are stored: tokens are counted with CLIP's own
byte-pair encoder (open_clip's ``SimpleTokenizer``, the same vocabulary and pre-tokenisation as the trainers'
``CLIPTokenizer``), and content tags are dropped by a stated priority until the caption fits.

**The count.** A tag costs the tokens of ``"<tag>,"`` (the tag and the comma that follows it in a caption). A
line's cost is the sum over all its tags — its quality tags, the source and rating (and date) tags, its content
tags. That is an upper bound of the exact count of any arrangement of the same tags (the last tag has no comma;
shuffling moves no token across a ``", "`` boundary), so a line within budget stays within it however a trainer
shuffles it. The stored caption's content is cut to fit beside the fixed part alone (for ``v7`` the band tag, not
the ``score_K_up`` tags): each training line draws its own ``score_K_up`` tags and keeps the content that fits beside
them (``captions.lines``), so the budget goes to the quality tags a line really carries.

**The priority.** Never dropped: the band tag (V6: its chain), the source and rating tags; a line's ``score_K_up``
tags are optional and give way to its protected content (``captions.lines``). Content tags are kept in this order
and dropped from the end: first the protected groups — characters, OCs, copyrights, artists, in that order — then
every other tag from the rarest in the corpus to the most common (a tag on half the posts, ``solo``, says least
about one picture). When even the protected tags do not fit, they are dropped from the end too (artists before
copyrights before characters). Frequencies are the share of live posts carrying the tag (see ``frequencies``).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import accumulate

DEFAULT_TOKEN_LIMIT = 75  # CLIP's 77 minus the start and end tokens; kohya's max_token_length 150/225 allow more


@functools.cache
def _tokenizer():  # noqa: ANN202 - open_clip's SimpleTokenizer
    from open_clip.tokenizer import SimpleTokenizer  # imports torch: only when captions are built

    return SimpleTokenizer()


def count_tokens(text: str) -> int:
    """Exact CLIP BPE tokens of ``text``, without the start and end tokens (what the 75-token limit counts)."""
    return len(_tokenizer().encode(text))


@functools.lru_cache(maxsize=1 << 20)  # a booru's whole vocabulary (~0.5–1M tags, ~100 bytes each cached)
def tag_cost(tag: str) -> int:
    """Tokens a tag costs in a caption: the tag and its following comma. Cached for a vocabulary's worth of tags: with
    2^18 the tokenizer's misses (~8 % of lookups on a 500k-tag corpus) were ~35 % of an export's time (1M-post
    Parquet export: 92.5 / 103.3 s with 2^18, 84.4 / 76.7 s with 2^20, runs alternated on one corpus)."""
    return count_tokens(f"{tag},")


def tags_cost(tags: Sequence[str]) -> int:
    return sum(tag_cost(tag) for tag in tags)


def prioritised(content: Sequence[str], protected: int, frequencies: Mapping[str, int]) -> list[str]:
    """Content tags in keep order: the first ``protected`` tags as they are (characters, OCs, copyrights, artists),
    then the rest from the rarest to the most common (ties: as given — the sort is stable). Tags not in
    ``frequencies`` count as rare."""
    if isinstance(frequencies, defaultdict):
        key = frequencies.__getitem__  # C-level (the regeneration hot path passes one)
    else:
        get = frequencies.get

        def key(tag: str) -> int:
            return get(tag, 0)

    return [*content[:protected], *sorted(content[protected:], key=key)]


def cumulative_costs(ordered: Sequence[str], costs: dict[str, int] | None = None) -> list[int]:
    """Running token cost of ``ordered``; ``costs`` (tag → cost, filled as it goes) spares the per-tag call."""
    if costs is None:
        return list(accumulate(map(tag_cost, ordered)))
    for tag in set(ordered).difference(costs):
        costs[tag] = tag_cost(tag)
    return list(accumulate(map(costs.__getitem__, ordered)))


def kept_count(cumulative: Sequence[int], budget: int) -> int:
    """How many tags (a prefix in keep order) fit in ``budget`` tokens: the number of cumulative costs ≤ budget —
    what PostgreSQL's ``width_bucket(budget, cumulative)`` computes in the set-based path."""
    import bisect

    return bisect.bisect_right(cumulative, budget)


class BudgetTooSmall(ValueError):
    """The limit cannot hold even the tags that are never dropped."""


def check_limit(limit: int, quality_costs: Mapping[int, int], fixed_cost: int) -> None:
    """Refuse a limit that cannot hold a band's fixed quality tags (``quality_costs``: v7 the band tag, v6 the chain)
    plus the source and rating tags (``fixed_cost``: the most those can cost), naming the band and what it needs."""
    if limit < 1:
        raise BudgetTooSmall(f"token limit must be ≥ 1, got {limit}")
    for band, cost in sorted(quality_costs.items(), reverse=True):
        if cost + fixed_cost > limit:
            raise BudgetTooSmall(
                f"token limit {limit} cannot hold band {band}'s quality tags ({cost} tokens) plus the source and "
                f"rating tags (up to {fixed_cost}): raise --token-limit (kohya: 150 or 225 with max_token_length) "
                f"or raise the floor (--floor) so that bands carry fewer score_K_up tags"
            )
