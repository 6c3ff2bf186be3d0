-- The same signatures of the picture with 2.5 % and 5 % cut off every side (validate.CROP_LEVELS, in that order):
-- a re-poster's small crop scales and shifts the picture, so its pHash moves by up to 14 bits against the whole
-- original and by a few against the original's matching crop. NULL: not computed yet (`pony images hash`).
ALTER TABLE image ADD COLUMN crop_phash bigint[], ADD COLUMN crop_colour_thumb bytea[], ADD COLUMN crop_detail bytea[];
