-- Normalisation retention (issue 28): a run's scores are one partition of about 130 bytes a post (~4 GB at 30M
-- posts). After a run, the partitions of complete runs older than the newest `normalize_keep_runs` are dropped and
-- the run is marked 'pruned' (its row, parameters, summary and growth curve stay: rating sets name it).
ALTER TABLE normalize_run DROP CONSTRAINT normalize_run_status_check;
ALTER TABLE normalize_run ADD CONSTRAINT normalize_run_status_check
    CHECK (status IN ('running', 'complete', 'pruned'));
