-- easel schema 10: the word list the stored images were last checked against (the word-flag backfill).
-- At most one row. When discord.nsfw_words is the same at the next start, nothing is scanned again:
-- every job recorded since was flagged against that very list when it was accepted (or recovered).

CREATE TABLE word_flag_scan (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    digest     TEXT    NOT NULL,
    scanned_at REAL    NOT NULL
);
