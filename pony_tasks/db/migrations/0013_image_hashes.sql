-- Perceptual signatures of every stored image: the cheap first signals for near-duplicates across sites (the same
-- work re-encoded, resized, converted). phash: imagehash's 64-bit DCT hash of the luminance, as a signed bigint
-- (the same 64 bits); colour_thumb: the image averaged down to 4×4 RGB pixels (48 bytes) — pHash ignores colour,
-- so another artist's colour swap of the same line art has a close pHash and a far colour thumbnail.
-- NULL: not computed yet (`pony images hash`).
ALTER TABLE image ADD COLUMN phash bigint, ADD COLUMN colour_thumb bytea;
CREATE INDEX image_phash ON image (phash);
