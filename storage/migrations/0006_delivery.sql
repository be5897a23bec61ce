-- easel schema 6: delivery that keeps trying, and finds its message by id.
-- status_message_id: the message that will carry the job's result (the interaction's original
--   response, the reply posted for a reaction, or a channel message posted in its place), recorded
--   when it is created, before any result is uploaded into it.
-- delivery_attempts / delivery_error / next_delivery_at: failed posts and when to try again.
-- undeliverable: Discord refused the post for good (e.g. missing permissions); never retried.
-- The jobs table is not rebuilt (other tables cascade from it): columns are added.

ALTER TABLE jobs ADD COLUMN status_message_id INTEGER;
ALTER TABLE jobs ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN delivery_error TEXT;
ALTER TABLE jobs ADD COLUMN next_delivery_at REAL;
ALTER TABLE jobs ADD COLUMN undeliverable INTEGER NOT NULL DEFAULT 0 CHECK (undeliverable IN (0, 1));

-- For the sweep of expired tokens; small: only jobs still holding one. (Failed posts waiting for
-- another try are found through jobs_by_status: few jobs are done/failed and not yet delivered.)
CREATE INDEX jobs_with_token ON jobs (created_at) WHERE interaction_token IS NOT NULL;

-- Interaction tokens are of no use once the result is posted or the job is over: drop the old ones.
UPDATE jobs SET interaction_token = NULL WHERE status IN ('delivered', 'cancelled');
