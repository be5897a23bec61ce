-- easel schema 2: per-member preferences (/easel prefs). Deleted by forget(user).

CREATE TABLE user_prefs (
    user_id        INTEGER PRIMARY KEY,
    default_model  TEXT,
    default_aspect TEXT,
    dm_results     INTEGER NOT NULL DEFAULT 0 CHECK (dm_results IN (0, 1)),
    updated_at     REAL    NOT NULL
);
