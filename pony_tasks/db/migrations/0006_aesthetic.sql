-- The aesthetic model: versions trained on human ratings of embeddings, promotion decisions, scores.

CREATE TABLE aesthetic_model (
    version_id           integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    embedding_model_id   integer     NOT NULL REFERENCES embedding_model,
    architecture         text        NOT NULL CHECK (architecture IN ('mlp', 'linear')),
    hyperparameters      jsonb       NOT NULL,
    metrics              jsonb       NOT NULL,             -- on this version's held-out images
    training_set_sha256  text        NOT NULL,
    training_images      integer     NOT NULL,
    weights_key          text        NOT NULL,             -- object-store key of the state dict
    score_cdf            double precision[] NOT NULL,      -- 1,001 quantiles of its scores over all embeddings
    status               text        NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'retired')),
    created_at           timestamptz NOT NULL DEFAULT now(),
    promoted_at          timestamptz
);
CREATE UNIQUE INDEX aesthetic_model_one_active ON aesthetic_model ((status)) WHERE status = 'active';

CREATE TABLE aesthetic_heldout (
    version_id  integer NOT NULL REFERENCES aesthetic_model,
    sha256      text    NOT NULL REFERENCES image,
    PRIMARY KEY (version_id, sha256)
);

CREATE TABLE aesthetic_promotion (
    promotion_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id         integer     NOT NULL REFERENCES aesthetic_model,
    previous_version   integer     REFERENCES aesthetic_model,
    decided_at         timestamptz NOT NULL DEFAULT now(),
    promoted           boolean     NOT NULL,
    override_reason    text,
    comparison         jsonb       NOT NULL
);

CREATE TABLE aesthetic_score (
    version_id  integer          NOT NULL REFERENCES aesthetic_model,
    sha256      text             NOT NULL,
    score       double precision NOT NULL CHECK (score >= 0 AND score <= 1),
    percentile  double precision NOT NULL CHECK (percentile >= 0 AND percentile <= 1),
    PRIMARY KEY (version_id, sha256)
);
