-- CLIP image embeddings: registered models, shards in object storage, and where each image's vector lives.

CREATE TABLE embedding_model (
    model_id        integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text    NOT NULL,           -- open_clip model name, e.g. ViT-L-14
    pretrained      text    NOT NULL,           -- tag (openai), file path or object-store URI as given
    weights_sha256  text,                       -- for weights loaded from a file: what was actually loaded
    dimension       integer NOT NULL CHECK (dimension > 0),
    image_size      integer NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, pretrained, weights_sha256)
);

CREATE TABLE embedding_shard (
    shard_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    model_id     integer NOT NULL REFERENCES embedding_model,
    storage_key  text    NOT NULL,              -- .npy of L2-normalised float16 vectors, one row per image
    index_key    text    NOT NULL,              -- .parquet: row, sha256
    rows         integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_id, storage_key)
);

CREATE TABLE image_embedding (
    model_id  integer NOT NULL REFERENCES embedding_model,
    sha256    text    NOT NULL REFERENCES image,
    shard_id  bigint  NOT NULL REFERENCES embedding_shard,
    row       integer NOT NULL,
    PRIMARY KEY (model_id, sha256)
);
CREATE INDEX image_embedding_shard ON image_embedding (shard_id, row);

CREATE TABLE embedding_failure (
    model_id   integer NOT NULL REFERENCES embedding_model,
    sha256     text    NOT NULL REFERENCES image,
    reason     text    NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, sha256)
);
