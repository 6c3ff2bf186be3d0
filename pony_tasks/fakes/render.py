"""How each site writes a corpus post in its API (field names and quirks from docs/booru-apis.md)."""

from __future__ import annotations

import hashlib
import html
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pony_tasks.boorus.records import wilson_lower_bound
from pony_tasks.fakes.corpus import CorpusPost, FileBytes

DANBOORU_RATING = {"general": "g", "sensitive": "s", "questionable": "q", "explicit": "e"}
E621_RATING = {"general": "s", "questionable": "q", "explicit": "e"}
DERPI_RATING = {"general": "safe", "sensitive": "suggestive", "questionable": "questionable", "explicit": "explicit"}
# Philomena's violence/gore ratings, sent instead of the usual tag on some posts (the adapter maps them back).
DERPI_DARK_RATING = {"sensitive": "semi-grimdark", "questionable": "grimdark", "explicit": "grotesque"}
EASTERN = timezone(timedelta(hours=-4))
CENTRAL = timezone(timedelta(hours=-5))


def file_path(site: str, post: CorpusPost, file: FileBytes) -> str:
    md5, ext = file.md5, post.file_ext
    if site == "danbooru":
        return f"/data/original/{md5[:2]}/{md5[2:4]}/{md5}.{ext}"
    if site == "e621":
        return f"/data/{md5[:2]}/{md5[2:4]}/{md5}.{ext}"
    if site == "derpibooru":
        day = post.created_at
        return f"/img/view/{day.year}/{day.month}/{day.day}/{post.post_id}.{ext}"
    return f"/images/{md5[:2]}/{md5[2:4]}/{md5}.{ext}"


def render(site: str, post: CorpusPost, file: FileBytes, base_url: str, now: datetime) -> dict[str, Any]:
    """The post as the site's API writes it at ``now`` (votes grown, deleted once its deletion time passed)."""
    up, down, favorites = post.votes_at(now)
    url = base_url + file_path(site, post, file)
    return {"danbooru": _danbooru, "e621": _e621, "derpibooru": _derpibooru, "gelbooru": _gelbooru}[site](
        post, file, url, up, down, favorites, post.is_deleted_at(now)
    )


def derpibooru_tag_id(name: str) -> int:
    """A stable tag id for the fake Philomena (the real site numbers its tags; the image JSON lists ``tag_ids``)."""
    return int(hashlib.md5(name.encode()).hexdigest()[:7], 16) + 1


def derpibooru_tags(post: CorpusPost) -> list[tuple[str, str | None]]:
    """(tag, Philomena category) for a post; the category is served only by the fake's tags API."""
    dark = post.post_id % 11 == 0 and post.rating in DERPI_DARK_RATING
    rating = DERPI_DARK_RATING[post.rating] if dark else DERPI_RATING[post.rating]
    tags: list[tuple[str, str | None]] = [(rating, "rating"), (f"artist:{post.artist}", "origin")]
    for character in post.characters:
        if character == "original_character":
            tags.append((f"oc:{character}", "oc"))
        else:
            tags.append((character.replace("_", " "), "character"))
    tags += [(s.replace("_", " "), "species") for s in post.species]
    tags += [(g.replace("_", " "), None) for g in post.general]
    return tags


def _danbooru(
    post: CorpusPost, file: FileBytes, url: str, up: int, down: int, favorites: int, deleted: bool
) -> dict[str, Any]:
    created = post.created_at.astimezone(EASTERN)
    record = {
        "id": post.post_id,
        "created_at": created.isoformat(timespec="milliseconds"),
        "updated_at": created.isoformat(timespec="milliseconds"),
        "score": up - down,
        "up_score": up,
        "down_score": -down,
        "fav_count": favorites,
        "rating": DANBOORU_RATING[post.rating],
        "md5": file.md5,
        "file_ext": post.file_ext,
        "file_size": len(file.data),
        "image_width": post.width,
        "image_height": post.height,
        "source": f"https://example.art/{post.artist}/{post.post_id}",
        "tag_string": " ".join(sorted(post.all_tags)),
        "tag_string_general": " ".join([*post.general, *post.species]),
        "tag_string_character": " ".join(post.characters),
        "tag_string_copyright": post.copyright,
        "tag_string_artist": post.artist,
        "tag_string_meta": "",
        "is_deleted": deleted,
        "is_flagged": False,
        "is_pending": False,
        "is_banned": False,
        "parent_id": None,
        "file_url": url,
        "large_file_url": url,
        "preview_file_url": url,
    }
    if post.broken_record:
        record["rating"] = "x"
    return record


def _e621(
    post: CorpusPost, file: FileBytes, url: str, up: int, down: int, favorites: int, deleted: bool
) -> dict[str, Any]:
    created = post.created_at.astimezone(EASTERN).isoformat(timespec="milliseconds")
    shown = None if post.hidden or deleted else url  # hidden from anonymous callers; deleted posts lose their files
    record = {
        "id": post.post_id,
        "created_at": created,
        "updated_at": created,
        "file": {
            "width": post.width,
            "height": post.height,
            "ext": post.file_ext,
            "size": len(file.data),
            "md5": file.md5,
            "url": shown,
        },
        "preview": {"width": 150, "height": 150, "url": shown},
        "sample": {"has": False, "height": post.height, "width": post.width, "url": shown},
        "score": {"up": up, "down": -down, "total": up - down},
        "tags": {
            "general": list(post.general),
            "artist": [post.artist],
            "contributor": [],
            "copyright": [post.copyright],
            "character": list(post.characters),
            "species": list(post.species),
            "invalid": [],
            "meta": [],
            "lore": [],
        },
        "rating": E621_RATING[post.rating],
        "fav_count": favorites,
        "sources": [f"https://example.art/{post.artist}/{post.post_id}"]
        + ([f"https://twitter.example/{post.artist}/status/{post.post_id}"] if post.post_id % 5 == 0 else []),
        "flags": {"pending": False, "flagged": False, "note_locked": False, "deleted": deleted},
        "change_seq": post.post_id * 7,
        "relationships": {"parent_id": None, "has_children": False, "children": []},
    }
    if post.broken_record:
        record["score"] = up - down  # a number where an object belongs
    return record


def _derpibooru(
    post: CorpusPost, file: FileBytes, url: str, up: int, down: int, favorites: int, deleted: bool
) -> dict[str, Any]:
    # Philomena sent timestamps without a zone until 2021-01 (they are UTC); the fake does the same for old posts.
    zone = "Z" if post.created_at.year >= 2021 else ""
    created = post.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + zone
    if deleted:
        return {
            "id": post.post_id,
            "created_at": created,
            "updated_at": created,
            "first_seen_at": created,
            "deletion_reason": "Rule #3 violation",
            "duplicate_of": None,
            "hidden_from_users": True,
        }
    named = derpibooru_tags(post)
    if post.broken_record:
        named = [(t, c) for t, c in named if c != "rating"]  # no rating tag at all
    tags = [t for t, _ in named]
    return {
        "id": post.post_id,
        "created_at": created,
        "updated_at": created,
        "first_seen_at": created,
        "width": post.width,
        "height": post.height,
        "format": post.file_ext,
        "mime_type": "image/png" if post.file_ext == "png" else "image/jpeg",
        "size": len(file.data),
        "sha512_hash": file.sha512,
        "orig_sha512_hash": file.sha512,
        "tags": tags,
        "tag_ids": sorted(derpibooru_tag_id(t) for t in tags),
        "tag_count": len(tags),
        "score": up - down,
        "upvotes": up,
        "downvotes": down,
        "faves": favorites,
        "wilson_score": wilson_lower_bound(up, down),
        "comment_count": 0,
        "source_url": f"https://example.art/{post.artist}/{post.post_id}",
        "source_urls": [f"https://example.art/{post.artist}/{post.post_id}"],
        "view_url": url,
        "representations": {"full": url, "large": url, "medium": url, "small": url, "thumb": url},
        "animated": False,
        "duration": 0.04,
        "deletion_reason": None,
        "duplicate_of": None,
        "hidden_from_users": False,
    }


def _gelbooru(
    post: CorpusPost, file: FileBytes, url: str, up: int, down: int, favorites: int, deleted: bool
) -> dict[str, Any]:
    created = post.created_at.astimezone(CENTRAL).strftime("%a %b %d %H:%M:%S %z %Y")
    tags = [*post.all_tags]
    if post.post_id % 5 == 0:
        tags.append("pinkie's_party")  # an apostrophe, which Gelbooru sends as &#039;
    record = {
        "id": post.post_id,
        "created_at": created,
        "score": up - down,
        "width": post.width,
        "height": post.height,
        "md5": file.md5,
        "directory": f"{file.md5[:2]}/{file.md5[2:4]}",
        "image": f"{file.md5}.{post.file_ext}",
        "rating": post.rating,
        "source": f"https://example.art/{post.artist}/{post.post_id}",
        "change": int(post.created_at.timestamp()),
        "owner": "uploader",
        "creator_id": 1,
        "parent_id": 0,
        "tags": html.escape(" ".join(sorted(tags)), quote=True).replace("&#x27;", "&#039;"),
        "file_url": url,
        "preview_url": url,
        "sample_url": url,
        "status": "deleted" if deleted else "active",
        "has_children": "false",
    }
    if post.broken_record:
        record["created_at"] = "yesterday-ish"
    return record
