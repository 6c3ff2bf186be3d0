-- Booru ingestion: unified posts, append-only score history, quarantine, scrape cursors, images.

CREATE TABLE booru_post (
    site          text        NOT NULL CHECK (site IN ('danbooru', 'e621', 'derpibooru', 'gelbooru')),
    post_id       bigint      NOT NULL,
    created_at    timestamptz,
    rating        text        CHECK (rating IN ('general', 'sensitive', 'questionable', 'explicit')),
    site_rating   text,
    tags          text[]      NOT NULL DEFAULT '{}',
    tag_groups    jsonb       NOT NULL DEFAULT '{}'::jsonb,  -- category -> tags where the site says (artist, …)
    score         integer,
    up_votes      integer     CHECK (up_votes >= 0),
    down_votes    integer     CHECK (down_votes >= 0),
    favorites     integer,
    wilson_score  double precision,
    file_url      text,
    md5           text,
    sha512        text,
    width         integer,
    height        integer,
    file_ext      text,
    sources       text[]      NOT NULL DEFAULT '{}',
    deleted       boolean     NOT NULL DEFAULT false,
    row_digest    text,       -- md5 of the row as last written: re-ingesting an unchanged post costs one lookup
    PRIMARY KEY (site, post_id)
);
CREATE INDEX booru_post_created ON booru_post (site, created_at);

-- Every observation of a post's score; never updated or deleted.
CREATE TABLE booru_score_snapshot (
    site         text        NOT NULL,
    post_id      bigint      NOT NULL,
    observed_at  timestamptz NOT NULL,
    score        integer,
    up_votes     integer,
    down_votes   integer,
    favorites    integer,
    PRIMARY KEY (site, post_id, observed_at)
);

-- Pages and records we could not use, kept raw with the reason.
CREATE TABLE booru_quarantine (
    quarantine_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site           text        NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    request_url    text        NOT NULL,  -- credentials removed
    post_id        bigint,                -- when the broken record still had a usable id
    reason         text        NOT NULL,
    raw            text        NOT NULL
);
CREATE INDEX booru_quarantine_site ON booru_quarantine (site, received_at);

-- Scrape positions: the newest id seen (incremental), the oldest id reached (backfill).
CREATE TABLE booru_cursor (
    site           text PRIMARY KEY,
    newest_post_id bigint,
    oldest_post_id bigint,
    backfill_done  boolean     NOT NULL DEFAULT false,
    base_url       text,                  -- API base URL last scraped: its host may serve files
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Content-addressed image files in the object store.
CREATE TABLE image (
    sha256       text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key  text        NOT NULL,
    byte_size    bigint      NOT NULL,
    width        integer     NOT NULL,
    height       integer     NOT NULL,
    format       text        NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE booru_post_image (
    site        text        NOT NULL,
    post_id     bigint      NOT NULL,
    sha256      text        NOT NULL REFERENCES image (sha256),
    fetched_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, post_id),
    FOREIGN KEY (site, post_id) REFERENCES booru_post (site, post_id)
);
CREATE INDEX booru_post_image_sha256 ON booru_post_image (sha256);

-- Downloads that failed: permanent ones (corrupt, wrong hash, bomb, …) are not retried unless asked.
CREATE TABLE image_quarantine (
    site         text        NOT NULL,
    post_id      bigint      NOT NULL,
    url          text,
    reason       text        NOT NULL,
    permanent    boolean     NOT NULL,
    attempts     integer     NOT NULL DEFAULT 1,
    last_attempt timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, post_id),
    FOREIGN KEY (site, post_id) REFERENCES booru_post (site, post_id)
);
