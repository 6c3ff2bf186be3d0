-- Sites are data (issue 30): any configured instance of an engine (furbooru, e926, safebooru, …) stores its posts
-- here, so the site column takes any site name, not only the four built-in ones.
ALTER TABLE booru_post DROP CONSTRAINT IF EXISTS booru_post_site_check;
ALTER TABLE booru_post ADD CONSTRAINT booru_post_site_name CHECK (site ~ '^[a-z][a-z0-9_]{1,39}$');
