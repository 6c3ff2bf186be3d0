-- Every stage run (scrape, normalise, embed, train, …) is recorded here with its parameters and outcome,
-- so a user can see what ran, with which settings, and resume or audit it.
CREATE TABLE pipeline_run (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stage        text        NOT NULL,
    parameters   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status       text        NOT NULL DEFAULT 'running'
                 CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    summary      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    error        text
);
CREATE INDEX pipeline_run_stage_started ON pipeline_run (stage, started_at DESC);
