-- The rating set (images picked for humans to rate) and the human ratings themselves.

CREATE TABLE rating_set (
    set_id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL DEFAULT now(),
    normalize_run_id  bigint      NOT NULL REFERENCES normalize_run,
    parameters        jsonb       NOT NULL,
    size              integer     NOT NULL
);

CREATE TABLE rating_set_item (
    set_id    bigint  NOT NULL REFERENCES rating_set ON DELETE CASCADE,
    position  integer NOT NULL,           -- the order to show them in
    sha256    text    NOT NULL REFERENCES image,
    site      text    NOT NULL,
    post_id   bigint  NOT NULL,
    stratum   text    NOT NULL,           -- site|rating|decile|year
    PRIMARY KEY (set_id, sha256),
    UNIQUE (set_id, position)
);

CREATE TABLE human_rating (
    rating_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sha256       text        NOT NULL REFERENCES image,
    rating       smallint    NOT NULL CHECK (rating BETWEEN 1 AND 5),
    rater        text        NOT NULL CHECK (rater <> ''),
    rated_at     timestamptz NOT NULL,
    source       text,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (sha256, rater, rated_at)
);
CREATE INDEX human_rating_rater ON human_rating (rater, rated_at);
