-- A check's outcome in one word, and its Great Expectations Data Docs page. An empty batch is its own outcome,
-- 'no_rows' — never a pass: nothing was checked.
ALTER TABLE dq_result ADD COLUMN outcome text;
UPDATE dq_result SET outcome = CASE WHEN rows_checked = 0 THEN 'no_rows' WHEN blocking_failures > 0 THEN 'failed'
                                    WHEN warnings > 0 THEN 'warnings' ELSE 'passed' END;
UPDATE dq_result SET success = false WHERE rows_checked = 0;
ALTER TABLE dq_result ALTER COLUMN outcome SET NOT NULL;
ALTER TABLE dq_result ADD CONSTRAINT dq_result_outcome CHECK (outcome IN ('passed', 'warnings', 'failed', 'no_rows'));
-- The HTML page of this result in the Data Docs site (PONY_HOME/gx/uncommitted/data_docs/local_site/…);
-- NULL for results stored before Data Docs were built.
ALTER TABLE dq_result ADD COLUMN docs_path text;
