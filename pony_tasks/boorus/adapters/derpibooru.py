"""Derpibooru (Philomena): ``/api/v1/json/search/images`` → ``{"images": […], "total": N}``; the rating is a tag.

Real behaviours handled here (from Philomena's own ``openapi.yaml`` and views; tested in
tests/boorus/test_site_rules.py and test_real_pages.py):

- Anti-bot middleware: a challenge is HTTP 501 with an HTML body, after which a client must send nothing for at
  least 5 s; carrying on gets a block of at least 15 minutes answered by HTTP 500 with an empty body, and every
  request during the block restarts it. :meth:`DerpibooruAdapter.defences` tells the client which is which.
- Tag categories (artist = ``origin``, ``character``, ``oc``, ``species``, ``rating``, ``content-official``, …) are
  not in the image JSON, only ``tag_ids``; they come from ``/api/v1/json/search/tags?q=id:1 || id:2`` (the tag
  query has an ``id`` field), cached in ``booru_tag_category``.
- Rating tags besides safe/suggestive/questionable/explicit: ``semi-grimdark``, ``grimdark``, ``grotesque`` rate
  violence and gore, and an image may carry only one of them. They are mapped onto our scale by how strong the
  content is (see ``RATING_TAGS``) rather than quarantining a valid post; with several, the most severe wins.
- Timestamps before 2021 have no zone (``2020-04-07T17:06:38``): they are UTC.
- Deleted and merged images leave searches (``del=1`` is for moderators only, openapi.yaml); ``GET
  /api/v1/json/images/<id>`` still answers with a stub (id, timestamps, ``deletion_reason`` or ``duplicate_of``,
  ``hidden_from_users: true``; ``Api.Json.ImageView``), which refresh uses to confirm a deletion.
"""

from __future__ import annotations

from typing import Any

from pony_tasks.boorus.adapters.base import PageError, PageRequest, SiteAdapter, optional_str, require_dict
from pony_tasks.boorus.records import RecordError, UnifiedPost, as_bool, as_int, clean_tags, parse_iso
from pony_tasks.polite_http import Defence

# Rating tags, mildest first; a post carrying several gets the most severe. The violence/gore tags sit by
# strength: semi-grimdark (mild blood, peril: what Danbooru rates "sensitive"), grimdark (graphic violence:
# "questionable"), grotesque (gore, body horror, scat: as restricted as "explicit").
RATING_TAGS = {
    "safe": "general",
    "suggestive": "sensitive",
    "semi-grimdark": "sensitive",
    "questionable": "questionable",
    "grimdark": "questionable",
    "explicit": "explicit",
    "grotesque": "explicit",
}
SEVERITY = ("general", "sensitive", "questionable", "explicit")
EVERYTHING_FILTER_ID = "56027"  # the site's public "Everything" filter: nothing hidden from a scraper
BLOCK_SECONDS = 15 * 60
# Philomena tag category -> our tag group (captions order character, copyright, artist, general).
CATEGORY_GROUPS = {
    "origin": "artist",
    "character": "character",
    "oc": "character",
    "species": "species",
    "rating": "rating",
    "content-official": "copyright",
    "content-fanmade": "copyright",
    "spoiler": "meta",
    "error": "meta",
    None: "general",
}


class DerpibooruAdapter(SiteAdapter):
    site = "derpibooru"
    default_base_url = "https://derpibooru.org"
    default_rate_per_second = 1.0  # the site allows 20 search requests per 10 s; we ask for half that
    page_limit = 50
    credential_hint = 'booru_credentials = { derpibooru = "api_key" }'
    secret_params = ("key",)
    has_tag_categories_api = True
    tag_batch = 50  # per_page maximum: one tags request per 50 unknown tag ids

    def defences(self, status: int, content_type: str, body: bytes) -> Defence | None:
        if status == 501 and ("html" in content_type.lower() or body.lstrip()[:1] == b"<"):
            return Defence("challenge", 5.0, "an anti-bot challenge page (HTTP 501, HTML): silent for at least 5 s")
        if status == 500 and not body.strip():
            return Defence("block", BLOCK_SECONDS, "Philomena's anti-bot block (HTTP 500, empty body) after a "
                           "challenge; any request during it restarts the 15 minutes")
        return None

    @property
    def filter_id(self) -> str | None:
        """The site's public filter that hides nothing (the row's ``filter_id``; Derpibooru's "Everything")."""
        if self.config is not None:
            return self.config.filter_id
        return EVERYTHING_FILTER_ID

    def _params(self, query: str, direction: str) -> dict[str, str]:
        params = {
            "q": query,
            "sf": "id",
            "sd": direction,
            "per_page": str(self.page_limit),
            "page": "1",
            **({"filter_id": self.filter_id} if self.filter_id else {}),
        }
        if self.credentials:
            params["key"] = self.credentials
        return params

    def newer_than(self, after_id: int, *, include_deleted: bool = False) -> PageRequest:
        return PageRequest("/api/v1/json/search/images", self._params(f"id.gt:{after_id}", "asc"))

    def older_than(self, before_id: int | None) -> PageRequest:
        query = "*" if before_id is None else f"id.lt:{before_id}"
        return PageRequest("/api/v1/json/search/images", self._params(query, "desc"))

    def post_lookup(self, post_id: int) -> PageRequest:
        params = {"key": self.credentials} if self.credentials else {}
        return PageRequest(f"/api/v1/json/images/{post_id}", params)

    def lookup_record(self, body: Any) -> Any | None:
        return body.get("image") if isinstance(body, dict) and isinstance(body.get("image"), dict) else None

    def records(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise PageError('expected {"images": [...], "total": N}')
        return body["images"]

    # Tag categories ------------------------------------------------------------------------------------------------
    def tag_category_request(self, tag_ids: list[int]) -> PageRequest:
        params = {"q": " || ".join(f"id:{i}" for i in tag_ids), "per_page": str(self.tag_batch), "page": "1"}
        if self.credentials:
            params["key"] = self.credentials
        return PageRequest("/api/v1/json/search/tags", params)

    def tag_categories(self, body: Any) -> dict[int, tuple[str, str | None]]:
        if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
            raise PageError('expected {"tags": [...], "total": N}')
        found = {}
        for tag in body["tags"]:
            if isinstance(tag, dict) and isinstance(tag.get("id"), int) and isinstance(tag.get("name"), str):
                category = tag.get("category")
                found[tag["id"]] = (tag["name"], category if isinstance(category, str) else None)
        return found

    def apply_tag_categories(self, post: UnifiedPost, categories: dict[int, tuple[str, str | None]]) -> None:
        by_name = {categories[i][0]: categories[i][1] for i in post.tag_ids if i in categories}
        groups: dict[str, list[str]] = {}
        for tag in post.tags:
            if tag in by_name:
                group = CATEGORY_GROUPS.get(by_name[tag], "general")
            else:
                group = _group_from_prefix(tag)
            groups.setdefault(group, []).append(tag)
        post.tag_groups = groups

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        post_id = as_int(raw.get("id"), "id")
        deleted = bool(
            as_bool(raw.get("hidden_from_users", False)) or raw.get("deletion_reason") or raw.get("duplicate_of")
        )
        tags = raw.get("tags") or []
        if not isinstance(tags, list):
            raise RecordError("tags must be a list of strings")
        tags = clean_tags([t for t in tags if isinstance(t, str)])
        rating_tags = [t for t in RATING_TAGS if t in tags]
        if not rating_tags and not deleted:
            raise RecordError(f"no rating tag (one of {', '.join(RATING_TAGS)})")
        rating = max((RATING_TAGS[t] for t in rating_tags), key=SEVERITY.index, default=None)
        representations = raw.get("representations") if isinstance(raw.get("representations"), dict) else {}
        sources = raw.get("source_urls")
        if not isinstance(sources, list):
            single = optional_str(raw, "source_url")
            sources = [single] if single else []
        created = raw.get("created_at")
        tag_ids = raw.get("tag_ids") if isinstance(raw.get("tag_ids"), list) else []
        return UnifiedPost(
            site=self.site,
            post_id=post_id,
            created_at=parse_iso(created, "created_at", naive_is_utc=True) if created is not None else None,
            rating=rating,
            site_rating=",".join(rating_tags) or None,
            tags=tags,
            score=as_int(raw.get("score"), "score", optional=deleted),
            up_votes=as_int(raw.get("upvotes"), "upvotes", optional=deleted),
            down_votes=as_int(raw.get("downvotes"), "downvotes", optional=deleted),
            favorites=as_int(raw.get("faves"), "faves", optional=deleted),
            file_url=representations.get("full") or None,
            md5=None,
            sha512=optional_str(raw, "sha512_hash"),
            width=as_int(raw.get("width"), "width", optional=True),
            height=as_int(raw.get("height"), "height", optional=True),
            file_ext=optional_str(raw, "format"),
            sources=[s for s in sources if isinstance(s, str) and s],
            deleted=deleted,
            tag_groups=_groups_from_prefixes(tags),
            tag_ids=tuple(i for i in tag_ids if isinstance(i, int) and not isinstance(i, bool)),
        )


def _group_from_prefix(tag: str) -> str:
    """Philomena puts some categories in the tag itself ("artist:name", "oc:name"); the prefix is kept."""
    if tag in RATING_TAGS:
        return "rating"
    prefix, colon, _ = tag.partition(":")
    return prefix if colon and prefix in ("artist", "oc", "species", "character", "source") else "general"


def _groups_from_prefixes(tags: list[str]) -> dict[str, list[str]]:
    """Groups before the tag categories are known (the engine replaces them from the tags API)."""
    groups: dict[str, list[str]] = {}
    for tag in tags:
        groups.setdefault(_group_from_prefix(tag), []).append(tag)
    return groups
