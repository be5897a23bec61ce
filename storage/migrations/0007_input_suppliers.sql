-- easel schema 7: who supplied each input file of a job, so that /forget takes a member's
-- pictures from other members' jobs without taking other members' own pictures.
-- supplied_by: the member whose picture the input is. A fresh upload (also a member's picture
--   someone reacted to): the job's owner. A Reroll/Redo: the supplier of the original job's input.
--   A variation (anime, paint) of one of easel's results: that result's owner.
--   NULL on rows written before this schema means the job's owner.
-- The jobs table is not touched (other tables cascade from it): a column is added to job_files.

ALTER TABLE job_files ADD COLUMN supplied_by INTEGER;
CREATE INDEX job_files_by_supplier ON job_files (supplied_by) WHERE supplied_by IS NOT NULL;

-- Inputs written before this schema that are one of easel's results were supplied by that result's
-- owner (the job's own owner when it is one of several owners of the same bytes, else the earliest).
UPDATE job_files SET supplied_by = (
    SELECT j.user_id FROM images AS i, jobs AS j, jobs AS o
    WHERE j.job_id = i.job_id AND i.path = job_files.path AND o.job_id = job_files.job_id
    ORDER BY j.user_id = o.user_id DESC, j.seq
    LIMIT 1)
WHERE role IN ('init_image', 'mask_image') AND EXISTS (SELECT 1 FROM images AS i WHERE i.path = job_files.path);
