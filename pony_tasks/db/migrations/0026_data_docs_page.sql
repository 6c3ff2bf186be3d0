-- Data Docs on the object store (issue 29): each check's page is published to the object store under
-- quality/data-docs/<docs_page>, so the Airflow UI serves it whatever pod or machine ran the check (docs_path is
-- that machine's local file, kept for the command line).
ALTER TABLE dq_result ADD COLUMN docs_page text;  -- the page's path within the Data Docs site
