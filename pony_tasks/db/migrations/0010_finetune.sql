-- Fine-tune runs, their gate decisions and the quality-tag evaluation.

CREATE TABLE finetune_run (
    run_id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    base_model            text        NOT NULL,          -- diffusers model directory as given
    dataset               text        NOT NULL,          -- export name (exports/<name>/manifest.json)
    manifest_sha256       text        NOT NULL,
    caption_set_id        bigint,
    aesthetic_version_id  integer,
    method                text        NOT NULL CHECK (method IN ('lora', 'full')),
    hyperparameters       jsonb       NOT NULL,
    status                text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete', 'failed')),
    steps_done            integer     NOT NULL DEFAULT 0,
    last_checkpoint       text,                          -- object-store prefix of the newest checkpoint
    weights_key           text,                          -- object-store prefix of the final weights
    metrics               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error                 text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    finished_at           timestamptz
);

CREATE TABLE finetune_gate (
    decision_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    context      text        NOT NULL,                   -- e.g. the Airflow run id, or 'cli'
    dataset      text        NOT NULL,
    gate         text        NOT NULL,                   -- dataset_quality, active_model, new_images, human_approval
    passed       boolean     NOT NULL,
    detail       text        NOT NULL,
    decided_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE finetune_eval (
    eval_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       bigint      NOT NULL REFERENCES finetune_run,
    aesthetic_version_id integer NOT NULL,
    results      jsonb       NOT NULL,                   -- per prompt variant: level, images, mean score
    spearman     double precision,                       -- tag level vs aesthetic score, over every image
    plot_key     text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
