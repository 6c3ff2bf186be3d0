-- The md5 and sha512 of each stored file, as the sites publish them for their posts (Danbooru, e621 and Gelbooru
-- give md5, Derpibooru sha512): a post whose file is already stored under another post is linked to it without
-- downloading it again. NULL: stored before this migration (`pony images hash` fills them in from the bytes).
ALTER TABLE image ADD COLUMN md5 text, ADD COLUMN sha512 text;
CREATE INDEX image_md5 ON image (md5);
CREATE INDEX image_sha512 ON image (sha512);
CREATE INDEX booru_post_md5 ON booru_post (lower(md5)) WHERE md5 IS NOT NULL;
CREATE INDEX booru_post_sha512 ON booru_post (lower(sha512)) WHERE sha512 IS NOT NULL;
