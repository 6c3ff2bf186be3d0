-- What the live sites taught us: blocks they put on us, Derpibooru's tag categories, derived file URLs, deletions.

-- A site blocking us (Philomena's 15-minute anti-bot block). No request goes to (site, base_url) before
-- blocked_until: other processes and the next Airflow try read this row before they send anything.
CREATE TABLE booru_site_block (
    site          text        NOT NULL,
    base_url      text        NOT NULL,
    blocked_until timestamptz NOT NULL,
    reason        text        NOT NULL,
    request_url   text,                     -- credentials removed
    detected_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, base_url)
);

-- Tag categories from a site's tags API (Derpibooru: not in the image JSON), by the site's tag id.
CREATE TABLE booru_tag_category (
    site        text        NOT NULL,
    tag_id      bigint      NOT NULL,
    name        text        NOT NULL,
    category    text,                       -- NULL: the site's general tags (no category)
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, tag_id)
);

-- e621 hides file.url for some posts from anonymous callers; we rebuild it from md5 + ext and say so.
ALTER TABLE booru_post ADD COLUMN file_url_derived boolean NOT NULL DEFAULT false;
-- When refresh found the post deleted (NULL: not deleted, or deleted before we first saw it).
ALTER TABLE booru_post ADD COLUMN deleted_seen_at timestamptz;
-- Gelbooru lists deletions on their own endpoint: the last entry read.
ALTER TABLE booru_cursor ADD COLUMN deleted_feed_cursor bigint;
-- Refresh also sweeps the whole id range a few pages per run (deletions outside the ranges due for a score
-- refresh): where the next sweep starts.
ALTER TABLE booru_cursor ADD COLUMN sweep_cursor bigint;
