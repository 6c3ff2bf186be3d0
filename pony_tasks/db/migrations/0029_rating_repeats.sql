-- Ratings at the seed's scale (issue 31). The rating page sends a key with each rating (made when the image was
-- shown): a rating sent twice — a retry after a dropped connection, a double key press — is stored once. Repeats
-- of an image (test–retest) are new ratings with their own key.
ALTER TABLE human_rating ADD COLUMN client_key text;
CREATE UNIQUE INDEX human_rating_client_key ON human_rating (client_key) WHERE client_key IS NOT NULL;
