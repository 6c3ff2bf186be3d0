-- Token budget and date tags for captions (issue 16, pony_tasks/captions/tokens.py, periods.py). Cached caption content now holds its tags in
-- keep order (protected groups, then rarest first) with the running token cost of that order, so any caption set
-- cuts a band's content to fit with one width_bucket() per row; the fixed cost is its source and rating tags.
-- Content rows cached before this migration have the old rules key (CONTENT_RULES_VERSION 3) and are not reused.
ALTER TABLE caption_content
    ADD COLUMN cumulative_tokens integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN text_ends         integer[] NOT NULL DEFAULT '{}',    -- length of content_text up to each tag
    ADD COLUMN fixed_tokens      integer   NOT NULL DEFAULT 0,       -- source, rating and date tags
    ADD COLUMN date_tags         text[]    NOT NULL DEFAULT '{}',    -- year and period (captions/periods.py)
    ADD COLUMN date_text         text      NOT NULL DEFAULT '';      -- date_tags joined with ', '


-- Per caption: its token cost (an upper bound of any training sample's CLIP token count) and the content tags cut.
ALTER TABLE caption
    ADD COLUMN tokens       smallint,
    ADD COLUMN tags_dropped smallint NOT NULL DEFAULT 0,
    ADD COLUMN date_tags    text[]   NOT NULL DEFAULT '{}';

ALTER TABLE caption_set
    ADD COLUMN token_limit      smallint,
    ADD COLUMN captions_trimmed integer NOT NULL DEFAULT 0,
    ADD COLUMN tags_dropped     integer NOT NULL DEFAULT 0;

-- How common each caption tag is (live posts carrying it), the drop order's key. A snapshot, taken when there is
-- none, when the live posts have doubled since, or on request (`pony captions regenerate --refresh-frequencies`);
-- its id is part of the caption rules key, so a new snapshot recomputes the cached content.
CREATE TABLE caption_tag_frequency_snapshot (
    snapshot_id  integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    live_posts   integer     NOT NULL,
    taken_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE caption_tag_frequency (
    snapshot_id  integer NOT NULL REFERENCES caption_tag_frequency_snapshot ON DELETE CASCADE,
    tag          text    NOT NULL,   -- as captions write it (render._caption_form)
    posts        integer NOT NULL,
    PRIMARY KEY (snapshot_id, tag)
);

-- The view's c.* was expanded when it was made (0007): recreate it so readers see the new columns too.
CREATE OR REPLACE VIEW active_caption AS
    SELECT c.* FROM caption c JOIN active_caption_set a ON a.set_id = c.set_id;
