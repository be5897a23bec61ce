-- easel schema 8: daily image quotas per server, with per-role overrides and queue weights.
-- daily_images: images one member may make per UTC day on the server; 0 = no limit.
-- A member's usage is not stored: it is counted from the job log (storage/quotas.py), so it
-- survives restarts and a cancelled or failed job stops counting as soon as it is recorded so.

CREATE TABLE guild_quotas (
    guild_id     INTEGER PRIMARY KEY,
    daily_images INTEGER NOT NULL CHECK (daily_images >= 0),
    updated_at   REAL    NOT NULL
);

-- A role's own settings for its members: daily_images (NULL: the server's limit applies; 0 = no
-- limit; the highest of a member's roles wins) and weight, jobs per turn in the fair queue (1-5;
-- the highest of a member's roles).
CREATE TABLE role_quotas (
    guild_id     INTEGER NOT NULL,
    role_id      INTEGER NOT NULL,
    daily_images INTEGER CHECK (daily_images IS NULL OR daily_images >= 0),
    weight       INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 5),
    updated_at   REAL    NOT NULL,
    PRIMARY KEY (guild_id, role_id)
) WITHOUT ROWID;

-- A member's jobs on a server since a time: the usage count at admission and in /queue.
CREATE INDEX jobs_by_member_time ON jobs (user_id, guild_id, created_at);
