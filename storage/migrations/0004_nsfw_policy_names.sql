-- easel schema 4: the NSFW policies are what /easel settings offers: block, spoiler, off.
-- SQLite cannot change a CHECK constraint, so both settings tables are rebuilt. The channel list
-- moves to a new table first, so dropping the old settings table cascades to nothing.
-- Old values: 'nsfw-channels' (NSFW only in age-restricted channels) is what 'block' now does
-- outside them; 'allow' becomes 'off'.

CREATE TABLE guild_settings_v4 (
    guild_id      INTEGER PRIMARY KEY,
    nsfw_policy   TEXT    NOT NULL DEFAULT 'block' CHECK (nsfw_policy IN ('block', 'spoiler', 'off')),
    per_user_cap  INTEGER CHECK (per_user_cap IS NULL OR per_user_cap > 0),
    default_model TEXT,
    updated_at    REAL    NOT NULL
);

INSERT INTO guild_settings_v4 (guild_id, nsfw_policy, per_user_cap, default_model, updated_at)
SELECT guild_id, CASE nsfw_policy WHEN 'allow' THEN 'off' ELSE 'block' END, per_user_cap, default_model, updated_at
FROM guild_settings;

CREATE TABLE guild_channels_v4 (
    guild_id   INTEGER NOT NULL REFERENCES guild_settings_v4 (guild_id) ON DELETE CASCADE,
    channel_id INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
) WITHOUT ROWID;

INSERT INTO guild_channels_v4 (guild_id, channel_id) SELECT guild_id, channel_id FROM guild_channels;

DROP TABLE guild_channels;
DROP TABLE guild_settings;
ALTER TABLE guild_settings_v4 RENAME TO guild_settings;
ALTER TABLE guild_channels_v4 RENAME TO guild_channels;
