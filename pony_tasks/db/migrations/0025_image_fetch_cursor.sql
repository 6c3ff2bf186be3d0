-- Where each site's image fetch stands (issue 29): the fetch lists a site's posts without a file in keyset pages of
-- post ids, and after_post_id is the id below which every listed post has been recorded (stored, linked or
-- quarantined). A run that is killed or reaches its time limit resumes here without listing anything twice; a walk
-- that reaches the end sets it back to 0, so the next run retries transient failures and older posts a backfill
-- added.
CREATE TABLE image_fetch_cursor (
    site           text        PRIMARY KEY,
    after_post_id  bigint      NOT NULL DEFAULT 0,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
