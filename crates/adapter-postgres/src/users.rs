//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Timestamptz};
use domain::UserId;
use domain::ports::UserRepository;
use domain::user::User;

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::retry::retrying;
use crate::schema::users;
use crate::statement::statement;

#[derive(QueryableByName)]
struct NewId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

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
}
