-- The same signatures of the picture inside a uniform frame (a border a re-poster added): without it a 4-px white
-- border on a 100-px picture moves the pHash by up to 22 bits. Equal to phash / colour_thumb when there is no frame;
-- detail / inner_detail: the picture's brightness at 16×16 (256 bytes), to see where two close pictures differ (a
-- signature changes a few cells, the next frame of a sequence a block of them).
-- NULL: not computed yet (`pony images hash` fills them in).
ALTER TABLE image ADD COLUMN detail bytea, ADD COLUMN inner_phash bigint, ADD COLUMN inner_colour_thumb bytea, ADD COLUMN inner_detail bytea;
CREATE INDEX image_inner_phash ON image (inner_phash);
