-- Who a user is to the identity provider: a token's `sub` claim names one user, for
-- good. The primary key gives a subject at most one user; the unique user_id gives a
-- user at most one subject. Rows are never updated nor deleted, so an instance may
-- cache the mapping.
CREATE TABLE user_subjects (
    subject     TEXT PRIMARY KEY CHECK (char_length(subject) BETWEEN 1 AND 255),
    user_id     BIGINT NOT NULL UNIQUE REFERENCES users (id),
    created_at  TIMESTAMPTZ NOT NULL
);
