//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text, Timestamptz};
use domain::UserId;
use domain::ports::UserRepository;
use domain::user::{Registration, Subject, User};

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::retry::retrying;
use crate::schema::{user_subjects, users};
use crate::statement::statement;

#[derive(QueryableByName)]
struct NewId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct SubjectUser {
    #[diesel(sql_type = BigInt)]
    user_id: i64,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    created: bool,
}

/// The user of a subject, and whether this statement created it: one statement that
/// reads the mapping and, only when there is none, inserts it with a user id drawn from
/// the users' sequence, then the user and their wallet with that id (the mapping's
/// foreign key is checked at the end of the statement, when the user exists).
///
/// A concurrent registration of the same new subject makes `ON CONFLICT` wait for it and
/// then insert nothing; the user and wallet are inserted only from the mapping's row, so
/// the losing side creates no user (it only spends a sequence value). It then returns no
/// row, because its snapshot predates the winner's commit: [`EXISTING`] reads the
/// winner's mapping with a fresh one.
const FOR_SUBJECT: &str = "\
    WITH found AS ( \
        SELECT s.user_id, u.created_at FROM user_subjects s \
        JOIN users u ON u.id = s.user_id WHERE s.issuer = $1 AND s.subject = $2), \
    m AS ( \
        INSERT INTO user_subjects (issuer, subject, user_id, created_at) \
        SELECT $1, $2, nextval(pg_get_serial_sequence('users', 'id')), $3 \
        WHERE NOT EXISTS (SELECT 1 FROM found) \
        ON CONFLICT (issuer, subject) DO NOTHING \
        RETURNING user_id), \
    u AS ( \
        INSERT INTO users (id, created_at) SELECT user_id, $3 FROM m RETURNING id), \
    w AS ( \
        INSERT INTO point_wallets (user_id, balance, updated_at) SELECT id, 0, $3 FROM u) \
    SELECT user_id, created_at, false AS created FROM found \
    UNION ALL SELECT id, $3, true FROM u";

/// The user a subject already maps to, read after losing the race to register it.
const EXISTING: &str = "\
    SELECT s.user_id, u.created_at, false AS created FROM user_subjects s \
    JOIN users u ON u.id = s.user_id WHERE s.issuer = $1 AND s.subject = $2";

/// Gives the mappings made before subjects were keyed by issuer (issuer NULL) the issuer
/// `$1`.
const ADOPT_UNKEYED: &str = "UPDATE user_subjects SET issuer = $1 WHERE issuer IS NULL";

/// Users and their wallets in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgUserRepository {
    pool: PgPool,
}

impl PgUserRepository {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserRepository for PgUserRepository {
    #[tracing::instrument(name = "pg.users.create", skip_all)]
    async fn create(&self, now: DateTime<Utc>) -> anyhow::Result<User> {
        run(&self.pool, move |conn| {
            // The user and their wallet in one statement: both or neither.
            retrying(conn, |conn| {
                statement(
                    "WITH u AS (INSERT INTO users (created_at) VALUES ($1) RETURNING id), \
                          w AS (INSERT INTO point_wallets (user_id, balance, updated_at) \
                                SELECT id, 0, $1 FROM u) \
                     SELECT id FROM u",
                )
                .bind::<Timestamptz, _>(now)
                .get_result::<NewId>(conn)
            })
            .map(|row| User {
                id: UserId::from_trusted(row.id),
                created_at: now,
            })
            .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.users.find", skip_all, fields(user_id = %id))]
    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>> {
        run(&self.pool, move |conn| {
            users::table
                .find(id.get())
                .select(users::created_at)
                .first::<DateTime<Utc>>(conn)
                .optional()
                .map(|found| found.map(|created_at| User { id, created_at }))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.users.for_subject", skip_all)]
    async fn for_subject(
        &self,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(User, Registration)> {
        let subject = subject.clone();
        run(&self.pool, move |conn| {
            let row = retrying(conn, |conn| {
                statement(FOR_SUBJECT)
                    .bind::<Text, _>(subject.issuer())
                    .bind::<Text, _>(subject.sub())
                    .bind::<Timestamptz, _>(now)
                    .get_result::<SubjectUser>(conn)
                    .optional()
            })
            .map_err(db_error)?;
            let row = match row {
                Some(row) => row,
                // Lost the race: the winner committed before `ON CONFLICT` gave way (had
                // it rolled back, this statement would have inserted), so it is there.
                None => statement(EXISTING)
                    .bind::<Text, _>(subject.issuer())
                    .bind::<Text, _>(subject.sub())
                    .get_result::<SubjectUser>(conn)
                    .map_err(db_error)?,
            };
            let registration = if row.created {
                Registration::Created
            } else {
                Registration::Existing
            };
            Ok((
                User {
                    id: UserId::from_trusted(row.user_id),
                    created_at: row.created_at,
                },
                registration,
            ))
        })
        .await
    }

    #[tracing::instrument(name = "pg.users.user_for_subject", skip_all)]
    async fn user_for_subject(&self, subject: &Subject) -> anyhow::Result<Option<UserId>> {
        let subject = subject.clone();
        run(&self.pool, move |conn| {
            user_subjects::table
                .filter(user_subjects::issuer.eq(subject.issuer()))
                .filter(user_subjects::subject.eq(subject.sub()))
                .select(user_subjects::user_id)
                .first::<i64>(conn)
                .optional()
                .map(|found| found.map(UserId::from_trusted))
                .map_err(db_error)
        })
        .await
    }

    #[tracing::instrument(name = "pg.users.adopt_unkeyed_subjects", skip_all)]
    async fn adopt_unkeyed_subjects(&self, issuer: &str) -> anyhow::Result<u64> {
        let issuer = issuer.to_owned();
        run(&self.pool, move |conn| {
            statement(ADOPT_UNKEYED)
                .bind::<Text, _>(&issuer)
                .execute(conn)
                .map(|rows| u64::try_from(rows).unwrap_or(u64::MAX))
                .map_err(db_error)
        })
        .await
    }
}
