-- Training lines within the token limit (issue 26, pony_tasks/captions/lines.py). A V7 caption's content is now cut
-- to fit beside its fixed part alone; each training line draws its own score_K_up tags and keeps the content that
-- fits beside them, never giving up the protected tags for an optional quality tag.
-- caption_content.protected: how many of the content tags (keep order) are protected (style cluster, characters,
-- OCs, copyrights, artists). Rows cached before this have the old rules key (CONTENT_RULES_VERSION 3): not reused.
ALTER TABLE caption_content ADD COLUMN protected smallint NOT NULL DEFAULT 0;

-- caption.rating: the merged rating the caption was written from (the strictest of the work's live posts): exports
-- filter and describe by it. caption.up_room: the score_K_up tags a line can carry beside its reserved content
-- (NULL: none to carry, or a set made before this migration, whose content was cut for all of them).
ALTER TABLE caption
    ADD COLUMN rating  text,
    ADD COLUMN up_room smallint;

-- Captions whose lines draw fewer score_K_up tags when a draw leaves no room for the protected content; and what the
-- set was made from (captions/sets._inputs_digest): a regeneration with the same inputs makes no new set (issue 27).
ALTER TABLE caption_set
    ADD COLUMN captions_thinnable integer NOT NULL DEFAULT 0,
    ADD COLUMN inputs_digest      text;

-- The view's c.* was expanded when it was made: recreate it so readers see the new columns too.
CREATE OR REPLACE VIEW active_caption AS
    SELECT c.* FROM caption c JOIN active_caption_set a ON a.set_id = c.set_id;
