-- Works: images judged to be the same picture (the same artwork posted on several sites, re-encoded, resized,
-- cropped, signed). Every pair decision is kept with its evidence; an operator's decision wins over the matcher's
-- and survives re-runs (issue 15).

-- One row per image pair the matcher or an operator looked at (sha_a < sha_b).
CREATE TABLE work_pair (
    sha_a       text        NOT NULL REFERENCES image (sha256) ON DELETE CASCADE,
    sha_b       text        NOT NULL REFERENCES image (sha256) ON DELETE CASCADE,
    verdict     text        NOT NULL CHECK (verdict IN ('duplicate', 'variant', 'distinct')),
    decided_by  text        NOT NULL CHECK (decided_by IN ('matcher', 'operator')),
    evidence    jsonb       NOT NULL,          -- signals and distances: phash_bits, colour_distance, aspect_ratio, …
    reason      text,                          -- an operator's words
    decided_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sha_a, sha_b),
    CHECK (sha_a < sha_b)
);

CREATE TABLE work (
    work_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    canonical_sha256 text        NOT NULL REFERENCES image (sha256),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Every image belongs to exactly one work (a work of one image when nothing matched).
CREATE TABLE work_image (
    sha256   text   PRIMARY KEY REFERENCES image (sha256) ON DELETE CASCADE,
    work_id  bigint NOT NULL REFERENCES work ON DELETE CASCADE
);
CREATE INDEX work_image_work ON work_image (work_id);
