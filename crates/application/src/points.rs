//! Points: charging a wallet, its balance and its history.

use std::sync::Arc;

use domain::idempotency::Completion;
use domain::points::{Balance, ChargeAmount, Charged, Credit, PointHistoryEntry};
use domain::ports::{Clock, CreditError, PointStore};
use domain::user::ForUser;
use domain::{Page, PageRequest, UserId};

/// Charges a user's wallet.
#[derive(Clone)]
pub struct ChargePoints {
    points: Arc<dyn PointStore>,
    clock: Arc<dyn Clock>,
}

/// A validated charge request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeCommand {
    pub user_id: UserId,
    pub amount: ChargeAmount,
}

#[derive(Debug, thiserror::Error)]
pub enum ChargeError {
    #[error("user not found")]
    UserNotFound,
    #[error("the balance may not exceed {} KRW", Balance::MAX)]
    BalanceLimitExceeded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ChargePoints {
    pub fn new(points: Arc<dyn PointStore>, clock: Arc<dyn Clock>) -> Self {
        Self { points, clock }
    }

    /// Adds the amount to the wallet and records it in the history, atomically; with a
    /// `completion`, the idempotency key's response is stored in the same transaction.
    ///
    /// # Errors
    /// - [`ChargeError::UserNotFound`] for an unknown user.
    /// - [`ChargeError::BalanceLimitExceeded`] when the balance would pass the cap.
    #[tracing::instrument(name = "charge_points", skip_all, fields(user_id = %cmd.user_id, amount = cmd.amount.get()))]
    pub async fn execute(
        &self,
        cmd: ChargeCommand,
        completion: Option<Completion<Charged>>,
    ) -> Result<Charged, ChargeError> {
        let credit = Credit::new(cmd.user_id, cmd.amount);
        self.points
            .credit(credit, self.clock.now(), completion)
            .await
            .map_err(|err| match err {
                CreditError::UserNotFound => ChargeError::UserNotFound,
                CreditError::LimitExceeded(_) => ChargeError::BalanceLimitExceeded,
                CreditError::Unknown(e) => ChargeError::Unknown(e),
            })
    }
}

/// Reads a user's balance.
#[derive(Clone)]
pub struct GetBalance {
    points: Arc<dyn PointStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum PointQueryError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetBalance {
    pub fn new(points: Arc<dyn PointStore>) -> Self {
        Self { points }
    }

    /// # Errors
    /// [`PointQueryError::UserNotFound`] for an unknown user.
    #[tracing::instrument(name = "get_balance", skip_all, fields(user_id = %user_id))]
    pub async fn execute(&self, user_id: UserId) -> Result<Balance, PointQueryError> {
        self.points
            .balance(user_id)
            .await?
            .ok_or(PointQueryError::UserNotFound)
    }
}

/// Reads one page of a user's history, newest first.
#[derive(Clone)]
pub struct GetPointHistory {
    points: Arc<dyn PointStore>,
}

impl GetPointHistory {
    pub fn new(points: Arc<dyn PointStore>) -> Self {
        Self { points }
    }

    /// # Errors
    /// [`PointQueryError::UserNotFound`] for an unknown user.
    #[tracing::instrument(name = "get_point_history", skip_all, fields(user_id = %user_id))]
    pub async fn execute(
        &self,
        user_id: UserId,
        page: PageRequest,
    ) -> Result<Page<PointHistoryEntry>, PointQueryError> {
        match self.points.history(user_id, page).await? {
            ForUser::UnknownUser => Err(PointQueryError::UserNotFound),
            ForUser::Found(page) => Ok(page),
        }
    }
}

crate::debug_opaque!(ChargePoints, GetBalance, GetPointHistory);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::idempotency::{IdempotencyKey, IdempotencyScope, LeaseToken, StoredResponse};
    use domain::points::{BalanceLimitExceeded, PointKind};
    use domain::ports::{MockClock, MockPointStore};

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Utc::now());
        Arc::new(clock)
    }

    fn cmd(amount: i64) -> ChargeCommand {
        ChargeCommand {
            user_id: UserId::new(3).unwrap(),
            amount: ChargeAmount::new(amount).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_charge_credits_the_wallet_up_to_the_cap() {
        let mut points = MockPointStore::new();
        points
            .expect_credit()
            .withf(|credit, _, completion| {
                credit.user_id.get() == 3
                    && credit.amount.get() == 500
                    && credit.ceiling.get() == Balance::MAX - 500
                    && completion.is_none()
            })
            .times(1)
            .returning(|credit, _, _| {
                Ok(Charged {
                    user_id: credit.user_id,
                    balance: Balance::from_trusted(1_500),
                })
            });
        let charged = ChargePoints::new(Arc::new(points), clock())
            .execute(cmd(500), None)
            .await
            .unwrap();
        assert_eq!(charged.balance.get(), 1_500);
    }

    #[tokio::test]
    async fn the_idempotency_completion_is_handed_to_the_store() {
        let mut points = MockPointStore::new();
        points
            .expect_credit()
            .withf(|_, _, completion| {
                completion
                    .as_ref()
                    .is_some_and(|c| c.token == LeaseToken(42))
            })
            .times(1)
            .returning(|credit, _, _| {
                Ok(Charged {
                    user_id: credit.user_id,
                    balance: Balance::from_trusted(500),
                })
            });
        let completion = Completion::new(
            IdempotencyScope {
                user_id: UserId::new(3).unwrap(),
                method: "POST".into(),
                path: "/api/v1/points/charge".into(),
                key: IdempotencyKey::new("k").unwrap(),
            },
            LeaseToken(42),
            |_: &Charged| StoredResponse {
                status: 200,
                body: vec![],
            },
        );
        ChargePoints::new(Arc::new(points), clock())
            .execute(cmd(500), Some(completion))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn charging_an_unknown_user_is_not_found() {
        let mut points = MockPointStore::new();
        points
            .expect_credit()
            .returning(|_, _, _| Err(CreditError::UserNotFound));
        let err = ChargePoints::new(Arc::new(points), clock())
            .execute(cmd(1), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::UserNotFound));
    }

    #[tokio::test]
    async fn charging_past_the_cap_is_refused() {
        let mut points = MockPointStore::new();
        points
            .expect_credit()
            .returning(|_, _, _| Err(CreditError::LimitExceeded(BalanceLimitExceeded)));
        let err = ChargePoints::new(Arc::new(points), clock())
            .execute(cmd(1), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::BalanceLimitExceeded));
    }

    #[tokio::test]
    async fn a_store_failure_while_charging_is_unknown() {
        let mut points = MockPointStore::new();
        points
            .expect_credit()
            .returning(|_, _, _| Err(CreditError::Unknown(anyhow::anyhow!("down"))));
        let err = ChargePoints::new(Arc::new(points), clock())
            .execute(cmd(1), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::Unknown(_)));
    }

    #[tokio::test]
    async fn the_balance_of_an_unknown_user_is_not_found() {
        let mut points = MockPointStore::new();
        points.expect_balance().returning(|_| Ok(None));
        let err = GetBalance::new(Arc::new(points))
            .execute(UserId::new(1).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, PointQueryError::UserNotFound));
    }

    #[tokio::test]
    async fn the_balance_of_a_known_user_is_read() {
        let mut points = MockPointStore::new();
        points
            .expect_balance()
            .returning(|_| Ok(Some(Balance::from_trusted(77))));
        let balance = GetBalance::new(Arc::new(points))
            .execute(UserId::new(1).unwrap())
            .await
            .unwrap();
        assert_eq!(balance.get(), 77);
    }

    #[tokio::test]
    async fn the_history_of_an_unknown_user_is_not_found() {
        let mut points = MockPointStore::new();
        points
            .expect_history()
            .times(1)
            .returning(|_, _| Ok(ForUser::UnknownUser));
        let err = GetPointHistory::new(Arc::new(points))
            .execute(UserId::new(1).unwrap(), PageRequest::default())
            .await
            .unwrap_err();
        assert!(matches!(err, PointQueryError::UserNotFound));
    }

    #[tokio::test]
    async fn the_history_of_a_known_user_is_paged() {
        let mut points = MockPointStore::new();
        points
            .expect_history()
            .withf(|_, page| page.page() == 2 && page.size() == 5)
            .times(1)
            .returning(|_, page| {
                Ok(ForUser::Found(Page {
                    items: vec![PointHistoryEntry {
                        id: 1,
                        kind: PointKind::Charge,
                        amount: 10,
                        balance_after: Balance::from_trusted(10),
                        order_id: None,
                        created_at: Utc::now(),
                    }],
                    request: page,
                    total_count: 6,
                }))
            });
        let page = GetPointHistory::new(Arc::new(points))
            .execute(
                UserId::new(1).unwrap(),
                PageRequest::new(Some(2), Some(5)).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!((page.items.len(), page.total_count), (1, 6));
    }
}
