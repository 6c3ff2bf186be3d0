"""e621 / e926: ``GET /posts.json`` → ``{"posts": […]}``; cursors as on Danbooru; needs a descriptive User-Agent.

Real behaviours handled here (tested in tests/boorus/test_real_pages.py and test_site_rules.py):

- e621 asks every client for a User-Agent naming the project and the operator's e621 username
  (``project/version (by username on e621)``, e621's API help page); the default contact placeholder is refused
  before any request.
- ``file.url`` is null for some posts to anonymous callers (content on the global blacklist, e.g. young -rating:s),
  while ``file.md5`` and ``file.ext`` are given. The URL is rebuilt the way the site lays its files out,
  ``https://static1.e621.net/data/<md5[0:2]>/<md5[2:4]>/<md5>.<ext>`` (gallery-dl's e621 extractor does the same,
  ``gallery_dl/extractor/e621.py``),
  the post is marked ``file_url_derived``, and the download is checked against the md5.
- Deleted posts are left out of searches unless the query has a ``status:`` tag (e621ng
  ``ElasticPostQueryBuilder``: ``status:any``/``all`` show them, ``status:deleted`` only them); refresh asks with
  ``status:any``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pony_tasks.boorus.adapters.base import IdCursorAdapter, PageError, require_dict
from pony_tasks.boorus.records import RecordError, UnifiedPost, as_bool, as_int, clean_tags, parse_iso
from pony_tasks.config import DEFAULT_SCRAPE_CONTACT

MD5 = re.compile(r"[0-9a-f]{32}")

RATINGS = {"s": "general", "q": "questionable", "e": "explicit"}
TAG_GROUPS = ("general", "artist", "contributor", "copyright", "character", "species", "invalid", "meta", "lore")


class E621Adapter(IdCursorAdapter):
    site = "e621"
    default_base_url = "https://e621.net"
    default_rate_per_second = 1.0  # the site asks for about 1 request/s sustained (2/s hard limit)
    page_limit = 320
    credential_hint = 'booru_credentials = { e621 = "username:api_key" }'
    default_file_base_url = "https://static1.e621.net"

    def refusal(self, settings: Any) -> str | None:
        if settings.scrape_contact.strip() in ("", DEFAULT_SCRAPE_CONTACT):
            return ("e621 asks every client to send a User-Agent naming the operator's e621 username, e.g. "
                    '"pony-pipeline/0.1 (by your_e621_name on e621)"; set scrape_contact (PONY_SCRAPE_CONTACT) to '
                    '"your_e621_name on e621" — the default placeholder gets scrapers blocked')
        return super().refusal(settings)

    def derived_file_url(self, md5: str, ext: str) -> str:
        """``static1.<site>/data/ab/cd/<md5>.<ext>`` as gallery-dl's e621 extractor rebuilds it (e926.net's files
        are on static1.e926.net, e6ai.net's on static1.e6ai.net); the site row's ``file_base_url`` or
        ``booru_file_base_urls`` overrides the server."""
        host = urlsplit(self.base_url).hostname or ""
        named = "." in host and not host.replace(".", "").isdigit() and host != "localhost"
        site_files = f"https://static1.{host}" if named else self.default_file_base_url  # e621ng's layout
        base = (self.file_base_url or site_files).rstrip("/")
        return f"{base}/data/{md5[0:2]}/{md5[2:4]}/{md5}.{ext}"

    def lookup_record(self, body: Any) -> Any | None:
        return body.get("post") if isinstance(body, dict) and isinstance(body.get("post"), dict) else None

    def records(self, body: Any) -> list[Any]:
        if not isinstance(body, dict) or not isinstance(body.get("posts"), list):
            raise PageError('expected {"posts": [...]}')
        return body["posts"]

    def to_unified(self, raw: Any) -> UnifiedPost:
        raw = require_dict(raw)
        site_rating = raw.get("rating")
        if site_rating not in RATINGS:
            raise RecordError(f"rating {site_rating!r} is not one of s/q/e")
        file = raw.get("file")
        score = raw.get("score")
        tags = raw.get("tags")
        if not isinstance(file, dict) or not isinstance(score, dict) or not isinstance(tags, dict):
            raise RecordError("file, score and tags must be objects")
        groups: dict[str, list[str]] = {}
        for group, names in tags.items():
            if not isinstance(names, list):
                raise RecordError(f"tags.{group} must be a list")
            if names:
                groups[group] = clean_tags(names)
        down = as_int(score.get("down"), "score.down")
        flags = raw.get("flags") if isinstance(raw.get("flags"), dict) else {}
        md5, ext, url = file.get("md5") or None, file.get("ext") or None, file.get("url") or None
        derived = url is None and bool(md5 and ext) and not as_bool(flags.get("deleted", False))
        if derived:
            if not (isinstance(md5, str) and MD5.fullmatch(md5) and isinstance(ext, str) and ext.isalnum()):
                raise RecordError(f"file.md5 {md5!r} / file.ext {ext!r} cannot make a file URL")
            url = self.derived_file_url(md5, ext)
        sources = raw.get("sources") or []
        if not isinstance(sources, list):
            raise RecordError("sources must be a list")
        return UnifiedPost(
            site=self.site,
            post_id=as_int(raw.get("id"), "id"),
            created_at=parse_iso(raw.get("created_at"), "created_at"),
            rating=RATINGS[site_rating],
            site_rating=site_rating,
            tags=[tag for names in groups.values() for tag in names],
            score=as_int(score.get("total"), "score.total"),
            up_votes=as_int(score.get("up"), "score.up"),
            down_votes=-down,  # e621 sends down votes as a negative number
            favorites=as_int(raw.get("fav_count"), "fav_count", optional=True),
            file_url=url,
            md5=md5,
            sha512=None,
            width=as_int(file.get("width"), "file.width", optional=True),
            height=as_int(file.get("height"), "file.height", optional=True),
            file_ext=ext,
            sources=[s for s in sources if isinstance(s, str) and s],
            deleted=as_bool(flags.get("deleted", False)),
            tag_groups=groups,
            file_url_derived=derived,
        )
