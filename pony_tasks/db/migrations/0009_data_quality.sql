-- Data-quality results: one summary row per suite run (the full Great Expectations result is in object storage).

CREATE TABLE dq_result (
    result_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    suite              text        NOT NULL,
    batch              jsonb       NOT NULL,          -- what was checked: site, since, version, set, …
    rows_checked       bigint      NOT NULL,
    success            boolean     NOT NULL,          -- every expectation met
    blocking_failures  integer     NOT NULL,          -- failed expectations of severity critical: downstream stops
    warnings           integer     NOT NULL,          -- failed expectations of severity warning: alert only
    failed             jsonb       NOT NULL,          -- [{expectation, column, severity, observed}]
    result_key         text        NOT NULL,          -- object-store key of the full JSON result
    checked_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dq_result_suite ON dq_result (suite, checked_at DESC);
