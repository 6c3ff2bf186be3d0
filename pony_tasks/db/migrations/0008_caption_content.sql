-- Content part of captions (source, rating and cleaned content tags), cached by a digest of what it is made from:
-- the post's site, rating, tags and tag groups plus the caption rules. A new aesthetic version or quality scheme
-- changes only the quality tags, so regeneration reuses these rows and runs as one INSERT … SELECT; only posts
-- whose tags changed (or new posts) are computed again in Python. Rows are never updated, only added; any row may
-- be deleted (it is recomputed when needed): caption rows copy what they use.

CREATE TABLE caption_content (
    digest        text   PRIMARY KEY,   -- md5(site | rating | tags | tag_groups | rules key)
    source_tag    text   NOT NULL,
    rating_tag    text   NOT NULL,
    content       text[] NOT NULL,
    content_text  text   NOT NULL,      -- content joined with ', '
    created_at    timestamptz NOT NULL DEFAULT now()
);
