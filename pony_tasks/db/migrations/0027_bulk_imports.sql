-- Bulk imports (issue 30): a site's database export (e621's db_export CSVs) or a mirror's table of API records.
-- One row per (site, kind, file): how many data rows are committed, so a killed import continues after them and a
-- file imported twice is recognised (by its SHA-256) and stores nothing twice.
CREATE TABLE booru_import (
    site           text        NOT NULL,
    kind           text        NOT NULL,            -- posts, tags, aliases, implications, records
    file_sha256    text        NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    file_name      text        NOT NULL,
    exported_at    timestamptz,                     -- when the site wrote the file: its score snapshots' time
    rows_done      bigint      NOT NULL DEFAULT 0,  -- data rows read and committed (quarantined ones included)
    stored         bigint      NOT NULL DEFAULT 0,  -- rows written (posts inserted or changed, tags, relations)
    quarantined    bigint      NOT NULL DEFAULT 0,
    kept_newer     bigint      NOT NULL DEFAULT 0,  -- posts left as they were: observed after the export's date
    started_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    PRIMARY KEY (site, kind, file_sha256)
);

-- A site's tag aliases and implications (e621's tag_aliases / tag_implications exports). Only active aliases
-- rewrite tags (antecedent → consequent, within the same site); implications are kept as data (see ARCHITECTURE).
CREATE TABLE booru_tag_relation (
    site         text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('alias', 'implication')),
    antecedent   text        NOT NULL,
    consequent   text        NOT NULL,
    status       text        NOT NULL,
    relation_id  bigint,
    created_at   timestamptz,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, kind, antecedent, consequent)
);
CREATE INDEX booru_tag_relation_active ON booru_tag_relation (site, kind) WHERE status = 'active';
