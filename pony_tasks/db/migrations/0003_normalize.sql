-- Cross-site popularity normalisation: versioned runs, one normalised score per post per run, the measured
-- score-versus-age curve used for young posts.

CREATE FUNCTION pony_wilson(up integer, down integer) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- Lower bound of the Wilson interval for the share of up votes, z = 2.57583 (pony_tasks.boorus.records).
    SELECT CASE
        WHEN up IS NULL OR down IS NULL THEN NULL
        WHEN up + down = 0 THEN 0.0
        ELSE greatest(0.0,
            ((up::float8 / (up + down)) + 2.57583 ^ 2 / (2 * (up + down))
             - 2.57583 * sqrt(((up::float8 / (up + down)) * (1 - up::float8 / (up + down))
                               + 2.57583 ^ 2 / (4 * (up + down))) / (up + down)))
            / (1 + 2.57583 ^ 2 / (up + down)))
    END
$$;

CREATE TABLE normalize_run (
    run_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    as_of       timestamptz NOT NULL,
    parameters  jsonb       NOT NULL,
    summary     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status      text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'complete'))
);

-- One partition per run (normalized_score_run_<id>), filled unindexed and attached at the end of the run: bulk
-- index builds instead of millions of index inserts; dropping an old run is dropping its partition.
CREATE TABLE normalized_score (
    run_id            bigint           NOT NULL,
    site              text             NOT NULL,
    post_id           bigint           NOT NULL,
    rating            text             NOT NULL,
    cohort            integer          NOT NULL,
    metric            double precision NOT NULL,
    log_metric        double precision NOT NULL,
    age_days          double precision NOT NULL,
    normalized_score  double precision NOT NULL CHECK (normalized_score >= 0 AND normalized_score <= 1),
    provisional       boolean          NOT NULL,
    PRIMARY KEY (run_id, site, post_id)
) PARTITION BY LIST (run_id);

CREATE TABLE growth_curve (
    run_id      bigint           NOT NULL REFERENCES normalize_run ON DELETE CASCADE,
    site        text             NOT NULL,
    age_bucket  double precision NOT NULL,  -- lower edge, days
    log_offset  double precision NOT NULL,  -- add to log(metric) at this age to predict the settled log(metric)
    samples     integer          NOT NULL,
    method      text             NOT NULL CHECK (method IN ('pairs', 'cross-section')),
    PRIMARY KEY (run_id, site, age_bucket)
);
