-- Cached caption content without its two derived columns: the joined text and the text length up to each tag are
-- array_to_string(content[1:kept], ', ') at insert time (captions/sets.py INSERT_CAPTIONS). Narrower rows are less
-- to compute, copy, parse and scan for every new post (issue 16: the first build of 1M captions).
ALTER TABLE caption_content DROP COLUMN content_text, DROP COLUMN text_ends;
