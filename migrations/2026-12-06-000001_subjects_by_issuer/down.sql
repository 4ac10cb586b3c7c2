-- Back to subjects keyed alone; fails when two issuers share a subject (as it must: the
-- old key could not tell them apart).
ALTER TABLE user_subjects
    DROP CONSTRAINT user_subjects_issuer_subject_key,
    DROP CONSTRAINT user_subjects_pkey,
    ADD CONSTRAINT user_subjects_user_id_key UNIQUE (user_id),
    ADD PRIMARY KEY (subject),
    DROP COLUMN issuer;
