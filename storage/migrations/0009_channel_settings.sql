-- easel schema 9: per-channel policies and more member preferences.
-- channel_settings: one row per channel an admin set something for (/easel settings channel:).
--   Every column NULL means "the server's" (guild_settings); allowed_commands is a comma list of
--   command names (imagine, vary, ...), NULL: every command. The row goes with its guild's row.
-- user_prefs gains the member's default negative prompt, sampler, and the DM when a job took at
-- least dm_when_done_s seconds (NULL: no DM). /forget deletes the whole row, as before.

CREATE TABLE channel_settings (
    channel_id       INTEGER PRIMARY KEY,
    guild_id         INTEGER NOT NULL,
    nsfw_policy      TEXT    CHECK (nsfw_policy IS NULL OR nsfw_policy IN ('block', 'spoiler', 'off')),
    per_user_cap     INTEGER CHECK (per_user_cap IS NULL OR per_user_cap > 0),
    default_model    TEXT,
    allowed_commands TEXT,
    updated_at       REAL    NOT NULL
);
CREATE INDEX channel_settings_by_guild ON channel_settings (guild_id);

ALTER TABLE user_prefs ADD COLUMN negative TEXT;
ALTER TABLE user_prefs ADD COLUMN sampler TEXT;
ALTER TABLE user_prefs ADD COLUMN dm_when_done_s INTEGER CHECK (dm_when_done_s IS NULL OR dm_when_done_s > 0);
