-- easel schema 5: every stored image carries both NSFW flags the gate (cogs/utils/gate.py) reads.
-- images.nsfw was already there: the safety checker flagged the image (or the image it was made
-- from). images.nsfw_word is new: its prompt has a discord.nsfw_words word (or the prompt of the
-- image it was made from had one). Images recorded before this migration count as word-free.

ALTER TABLE images ADD COLUMN nsfw_word INTEGER NOT NULL DEFAULT 0 CHECK (nsfw_word IN (0, 1));
