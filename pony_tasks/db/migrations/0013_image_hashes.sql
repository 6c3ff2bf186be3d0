-- Perceptual hashes of every stored image: the cheap first signal for near-duplicates across sites (the same work
-- re-encoded, resized, converted). phash: imagehash's 64-bit DCT hash of the luminance, as a signed bigint (the same
-- 64 bits); colour_hash: imagehash's colorhash (binbits 3, 42 bits) — pHash ignores colour, so a colour swap by
-- another artist has the same phash and a different colour hash. NULL: not hashed yet (`pony images hash`).
ALTER TABLE image ADD COLUMN phash bigint, ADD COLUMN colour_hash bigint;
CREATE INDEX image_phash ON image (phash);
