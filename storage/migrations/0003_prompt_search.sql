-- requires: fts5
-- easel schema 3: full-text search over prompts for /history search.
-- An external-content FTS5 index over jobs.prompt, kept current by triggers; 'rebuild' indexes
-- the jobs that existed before this migration. Without FTS5 this is skipped and search uses LIKE.

CREATE VIRTUAL TABLE jobs_fts USING fts5 (
    prompt,
    content = 'jobs',
    content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER jobs_fts_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO jobs_fts (rowid, prompt) VALUES (new.seq, new.prompt);
END;

CREATE TRIGGER jobs_fts_delete AFTER DELETE ON jobs BEGIN
    INSERT INTO jobs_fts (jobs_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
END;

CREATE TRIGGER jobs_fts_update AFTER UPDATE OF prompt ON jobs BEGIN
    INSERT INTO jobs_fts (jobs_fts, rowid, prompt) VALUES ('delete', old.seq, old.prompt);
    INSERT INTO jobs_fts (rowid, prompt) VALUES (new.seq, new.prompt);
END;

INSERT INTO jobs_fts (jobs_fts) VALUES ('rebuild');
