//! [`UserRepository`] on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use domain::UserId;
use domain::ports::UserRepository;
use domain::user::User;

use crate::error::db_error;
use crate::pool::{PgPool, run};
use crate::schema::{point_wallets, users};

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
            conn.transaction(|conn| {
                let id: i64 = diesel::insert_into(users::table)
                    .values(users::created_at.eq(now))
                    .returning(users::id)
                    .get_result(conn)?;
                diesel::insert_into(point_wallets::table)
                    .values((
                        point_wallets::user_id.eq(id),
                        point_wallets::balance.eq(0),
                        point_wallets::updated_at.eq(now),
                    ))
                    .execute(conn)?;
                Ok(User {
                    id: UserId::from_trusted(id),
                    created_at: now,
                })
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
