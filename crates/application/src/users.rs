//! Creating and looking up users.

use std::sync::Arc;

use domain::UserId;
use domain::ports::{Clock, UserRepository};
use domain::user::User;

/// Registers a new user with an empty wallet.
#[derive(Clone)]
pub struct CreateUser {
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl CreateUser {
    pub fn new(users: Arc<dyn UserRepository>, clock: Arc<dyn Clock>) -> Self {
        Self { users, clock }
    }

    /// # Errors
    /// [`CreateUserError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_user", skip_all)]
    pub async fn execute(&self) -> Result<User, CreateUserError> {
        Ok(self.users.create(self.clock.now()).await?)
    }
}

/// Looks a user up by id.
#[derive(Clone)]
pub struct GetUser {
    users: Arc<dyn UserRepository>,
}

#[derive(Debug, thiserror::Error)]
pub enum GetUserError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetUser {
    pub fn new(users: Arc<dyn UserRepository>) -> Self {
        Self { users }
    }

    /// # Errors
    /// [`GetUserError::UserNotFound`] when there is no such user.
    #[tracing::instrument(name = "get_user", skip_all, fields(user_id = %id))]
    pub async fn execute(&self, id: UserId) -> Result<User, GetUserError> {
        self.users.find(id).await?.ok_or(GetUserError::UserNotFound)
    }
}

crate::debug_opaque!(CreateUser, GetUser);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use domain::ports::{MockClock, MockUserRepository};

    fn clock_at(secs: i64) -> Arc<MockClock> {
        let mut clock = MockClock::new();
        let now = Utc.timestamp_opt(secs, 0).single().unwrap();
        clock.expect_now().return_const(now);
        Arc::new(clock)
    }

    #[tokio::test]
    async fn creating_a_user_stamps_it_with_the_clock() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .withf(|now| now.timestamp() == 1_000)
            .times(1)
            .returning(|now| {
                Ok(User {
                    id: UserId::new(5).unwrap(),
                    created_at: now,
                })
            });
        let user = CreateUser::new(Arc::new(users), clock_at(1_000))
            .execute()
            .await
            .unwrap();
        assert_eq!(user.id.get(), 5);
        assert_eq!(user.created_at.timestamp(), 1_000);
    }

    #[tokio::test]
    async fn a_store_failure_while_creating_is_unknown() {
        let mut users = MockUserRepository::new();
        users
            .expect_create()
            .returning(|_| Err(anyhow::anyhow!("boom")));
        let err = CreateUser::new(Arc::new(users), clock_at(0))
            .execute()
            .await
            .unwrap_err();
        assert!(matches!(err, CreateUserError::Unknown(_)));
    }

    #[tokio::test]
    async fn an_unknown_user_is_not_found() {
        let mut users = MockUserRepository::new();
        users.expect_find().returning(|_| Ok(None));
        let err = GetUser::new(Arc::new(users))
            .execute(UserId::new(9).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, GetUserError::UserNotFound));
    }

    #[tokio::test]
    async fn a_known_user_is_returned() {
        let mut users = MockUserRepository::new();
        users
            .expect_find()
            .withf(|id| id.get() == 9)
            .returning(|id| {
                Ok(Some(User {
                    id,
                    created_at: Utc::now(),
                }))
            });
        let user = GetUser::new(Arc::new(users))
            .execute(UserId::new(9).unwrap())
            .await
            .unwrap();
        assert_eq!(user.id.get(), 9);
    }
}
