-- A subject is unique only within its issuer: the mapping is keyed by (issuer, subject), so
-- two identity providers (or a change of provider) never map one's user onto another's
-- wallet. The issuer is the configured AUTH_JWT_ISSUER, or '' for one HS256 secret with no
-- issuer configured.
--
-- Rows mapped before this migration have no issuer (NULL): the server adopts them for the
-- issuer configured when it first starts after the migration, before it serves (see
-- docs/security.md). Instances of the previous version cannot register new subjects once
-- this has run (their ON CONFLICT names the old key): upgrade them together.
ALTER TABLE user_subjects
    ADD COLUMN issuer TEXT CHECK (char_length(issuer) <= 2048),
    DROP CONSTRAINT user_subjects_pkey,
    DROP CONSTRAINT user_subjects_user_id_key,
    ADD PRIMARY KEY (user_id),
    ADD CONSTRAINT user_subjects_issuer_subject_key UNIQUE NULLS NOT DISTINCT (issuer, subject);
