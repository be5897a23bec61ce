-- easel schema 1: the job log, the files a job owns, result images, per-guild settings.
-- Times are Unix seconds (REAL). Discord ids are INTEGER (snowflakes fit in 63 bits).

CREATE TABLE jobs (
    seq                INTEGER PRIMARY KEY AUTOINCREMENT,  -- the original order, never reused
    job_id             TEXT    NOT NULL UNIQUE,
    kind               TEXT    NOT NULL,
    user_id            INTEGER NOT NULL,
    guild_id           INTEGER,                            -- NULL in direct messages
    channel_id         INTEGER NOT NULL,
    interaction_id     INTEGER,
    interaction_token  TEXT,
    application_id     INTEGER,
    request_message_id INTEGER,
    params             TEXT    NOT NULL CHECK (json_valid(params)),
    prompt             TEXT,                               -- copy of params.prompt, for search
    status             TEXT    NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled',
                                         'delivering', 'delivered')),
    prior_status       TEXT,                               -- done/failed while 'delivering'
    error              TEXT,
    created_at         REAL    NOT NULL,
    started_at         REAL,
    finished_at        REAL,
    delivered_at       REAL,
    result_channel_id  INTEGER,
    result_message_id  INTEGER
);
CREATE INDEX jobs_by_user ON jobs (user_id, seq);
CREATE INDEX jobs_by_guild ON jobs (guild_id, seq);
CREATE INDEX jobs_by_status ON jobs (status, seq);
CREATE INDEX jobs_by_result_message ON jobs (result_message_id) WHERE result_message_id IS NOT NULL;

-- Files a job owns besides its result images: its inputs (init_image, mask_image) and its grid.
-- forget/prune delete a file only when no remaining row of this table or of images points to it.
CREATE TABLE job_files (
    job_id TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    role   TEXT NOT NULL,
    path   TEXT NOT NULL,
    PRIMARY KEY (job_id, role)
) WITHOUT ROWID;
CREATE INDEX job_files_by_path ON job_files (path);

CREATE TABLE images (
    job_id     TEXT    NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    idx        INTEGER NOT NULL CHECK (idx >= 0),
    seed       INTEGER NOT NULL,
    path       TEXT    NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    size_bytes INTEGER NOT NULL,
    nsfw       INTEGER NOT NULL DEFAULT 0 CHECK (nsfw IN (0, 1)),
    message_id INTEGER,
    PRIMARY KEY (job_id, idx)
);
CREATE INDEX images_by_path ON images (path);
CREATE INDEX images_by_message ON images (message_id) WHERE message_id IS NOT NULL;

CREATE TABLE guild_settings (
    guild_id      INTEGER PRIMARY KEY,
    nsfw_policy   TEXT    NOT NULL DEFAULT 'block' CHECK (nsfw_policy IN ('block', 'nsfw-channels', 'allow')),
    per_user_cap  INTEGER CHECK (per_user_cap IS NULL OR per_user_cap > 0),
    default_model TEXT,
    updated_at    REAL    NOT NULL
);

-- The channels a guild allows easel in; no row for a guild means every channel.
CREATE TABLE guild_channels (
    guild_id   INTEGER NOT NULL REFERENCES guild_settings (guild_id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;
