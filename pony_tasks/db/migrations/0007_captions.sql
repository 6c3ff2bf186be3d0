-- Caption sets: captions of every scored image under one aesthetic version and one quality scheme; exactly one set
-- is active, switched in one UPDATE, so a reader sees one whole set or another, never a mix.

CREATE TABLE caption_set (
    set_id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aesthetic_version_id  integer     NOT NULL REFERENCES aesthetic_model,
    scheme                text        NOT NULL CHECK (scheme IN ('v6', 'v7')),
    parameters            jsonb       NOT NULL,
    captions              integer     NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE caption (
    set_id       bigint   NOT NULL REFERENCES caption_set ON DELETE CASCADE,
    sha256       text     NOT NULL,
    band         smallint NOT NULL CHECK (band BETWEEN 1 AND 9),
    band_tag     text     NOT NULL,
    up_tags      text[]   NOT NULL,
    independent  boolean  NOT NULL,             -- v7: up tags sampled per training step
    source_tag   text     NOT NULL,
    rating_tag   text     NOT NULL,
    content      text[]   NOT NULL,
    text         text     NOT NULL,             -- rendered: fixed part ||| shuffleable part
    PRIMARY KEY (set_id, sha256)
);

CREATE TABLE active_caption_set (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    set_id       bigint  NOT NULL REFERENCES caption_set,
    switched_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE caption_set_switch (
    switch_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_set     bigint REFERENCES caption_set,
    to_set       bigint NOT NULL REFERENCES caption_set,
    reason       text   NOT NULL,
    switched_at  timestamptz NOT NULL DEFAULT now()
);

-- What readers use: one statement, one snapshot, one set.
CREATE VIEW active_caption AS
    SELECT c.* FROM caption c JOIN active_caption_set a ON a.set_id = c.set_id;
