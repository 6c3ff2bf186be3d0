-- One rate limit per site and image host across every process, task and pod (issue 29): the hourly scrape, the
-- daily refresh and every fetch worker of one site reserve their request slots here, so together they stay within
-- the site's limit. A reservation moves next_at on by the limit's interval in one statement (the row lock orders
-- concurrent reservations), on the database server's clock; a challenge's quiet period moves it further.
CREATE TABLE rate_limit (
    name     text        PRIMARY KEY,   -- 'api:<site>:<base url>' or 'files:<host>', as the limiters are named
    next_at  timestamptz NOT NULL       -- the earliest start of the next request through this limit
);
