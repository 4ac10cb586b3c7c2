//! Coupon campaigns and first-come-first-served issuing.

use std::sync::Arc;

use domain::coupon::{Coupon, IssueRefusal, NewCoupon, UserCoupon};
use domain::idempotency::Completion;
use domain::ports::{Clock, CouponStore, IssueError, UserRepository};
use domain::{CouponId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error("user not found")]
    UserNotFound,
    #[error("coupon not found")]
    CouponNotFound,
    #[error("the coupon is not issuable now")]
    NotIssuable,
    #[error("the coupon is sold out")]
    SoldOut,
    #[error("the user already holds this coupon")]
    AlreadyIssued,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// A request to issue a coupon to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueCommand {
    pub user_id: UserId,
    pub coupon_id: CouponId,
}

/// Coupon use cases.
#[derive(Clone)]
pub struct Coupons {
    coupons: Arc<dyn CouponStore>,
    users: Arc<dyn UserRepository>,
    clock: Arc<dyn Clock>,
}

impl Coupons {
    pub fn new(
        coupons: Arc<dyn CouponStore>,
        users: Arc<dyn UserRepository>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            coupons,
            users,
            clock,
        }
    }

    /// The clock of these use cases (statuses are computed against it).
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    /// Creates a campaign (operators).
    ///
    /// # Errors
    /// [`CouponError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_coupon", skip_all)]
    pub async fn create(&self, coupon: NewCoupon) -> Result<Coupon, CouponError> {
        Ok(self.coupons.create(coupon, self.clock.now()).await?)
    }

    /// # Errors
    /// [`CouponError::CouponNotFound`] for an unknown id.
    #[tracing::instrument(name = "get_coupon", skip_all, fields(coupon_id = %id))]
    pub async fn get(&self, id: CouponId) -> Result<Coupon, CouponError> {
        self.coupons
            .find(id)
            .await?
            .ok_or(CouponError::CouponNotFound)
    }

    /// Issues one copy to the user, first come first served.
    ///
    /// The campaign's window and remaining quantity are checked from its terms (a
    /// lock-free read the store may cache), so refusals (a sold-out campaign above all) cost no write and no lock; only then
    /// does the store claim a unit atomically. The user's existence is checked by the
    /// store's claim on the way in, and read here only when refusing, so that an unknown
    /// user always hears `UserNotFound` first.
    ///
    /// # Errors
    /// In this order: [`CouponError::UserNotFound`], [`CouponError::CouponNotFound`],
    /// [`CouponError::NotIssuable`], [`CouponError::AlreadyIssued`] /
    /// [`CouponError::SoldOut`].
    #[tracing::instrument(name = "issue_coupon", skip_all, fields(user_id = %cmd.user_id, coupon_id = %cmd.coupon_id))]
    pub async fn issue(
        &self,
        cmd: IssueCommand,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, CouponError> {
        let now = self.clock.now();
        let refusal = match self.coupons.terms(cmd.coupon_id).await? {
            None => CouponError::CouponNotFound,
            Some(coupon) => match coupon.check_issuable(now) {
                Ok(()) => {
                    return self
                        .coupons
                        .issue(coupon.issue_to(cmd.user_id, now), completion)
                        .await
                        .map_err(|err| match err {
                            IssueError::UserNotFound => CouponError::UserNotFound,
                            IssueError::AlreadyIssued => CouponError::AlreadyIssued,
                            IssueError::SoldOut => CouponError::SoldOut,
                            IssueError::Unknown(e) => CouponError::Unknown(e),
                        });
                }
                Err(IssueRefusal::NotIssuable) => CouponError::NotIssuable,
                // A holder asking again learns they hold it, not that it is gone.
                Err(IssueRefusal::SoldOut)
                    if self.coupons.holds(cmd.user_id, cmd.coupon_id).await? =>
                {
                    CouponError::AlreadyIssued
                }
                Err(IssueRefusal::SoldOut) => CouponError::SoldOut,
            },
        };
        // A holder plainly exists; anyone else must, before hearing about the coupon.
        if !matches!(refusal, CouponError::AlreadyIssued)
            && self.users.find(cmd.user_id).await?.is_none()
        {
            return Err(CouponError::UserNotFound);
        }
        Err(refusal)
    }

    /// The user's coupons, oldest first.
    ///
    /// # Errors
    /// [`CouponError::UserNotFound`] for an unknown user (their coupons are not read).
    #[tracing::instrument(name = "list_user_coupons", skip_all, fields(user_id = %user_id))]
    pub async fn of_user(&self, user_id: UserId) -> Result<Vec<UserCoupon>, CouponError> {
        if self.users.find(user_id).await?.is_none() {
            return Err(CouponError::UserNotFound);
        }
        Ok(self.coupons.of_user(user_id).await?)
    }
}

crate::debug_opaque!(Coupons);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use domain::UserCouponId;
    use domain::coupon::{CouponName, Discount, StoredCouponState};
    use domain::ports::{MockClock, MockCouponStore, MockUserRepository};
    use domain::user::User;

    struct Setup {
        now: DateTime<Utc>,
        users: MockUserRepository,
        coupons: MockCouponStore,
    }

    impl Setup {
        fn new(user_exists: bool) -> Self {
            let mut users = MockUserRepository::new();
            users.expect_find().returning(move |id| {
                Ok(user_exists.then(|| User {
                    id,
                    created_at: Utc::now(),
                }))
            });
            Self {
                now: Utc::now(),
                users,
                coupons: MockCouponStore::new(),
            }
        }

        fn with_coupon(mut self, remaining: i64, starts_in: i64, ends_in: i64) -> Self {
            let now = self.now;
            self.coupons.expect_terms().returning(move |id| {
                Ok(Some(Coupon {
                    id,
                    name: CouponName::new("Hot").unwrap(),
                    discount: Discount::Fixed(500),
                    total_quantity: 10,
                    remaining_quantity: remaining,
                    starts_at: now + Duration::seconds(starts_in),
                    ends_at: now + Duration::seconds(ends_in),
                }))
            });
            self
        }

        fn build(self) -> Coupons {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(self.now);
            Coupons::new(
                Arc::new(self.coupons),
                Arc::new(self.users),
                Arc::new(clock),
            )
        }
    }

    fn cmd() -> IssueCommand {
        IssueCommand {
            user_id: UserId::new(1).unwrap(),
            coupon_id: CouponId::new(2).unwrap(),
        }
    }

    fn copy(issue: &domain::coupon::CouponIssue) -> UserCoupon {
        UserCoupon {
            id: UserCouponId::new(9).unwrap(),
            user_id: issue.user_id,
            coupon_id: issue.coupon_id,
            name: issue.name.clone(),
            discount: issue.discount,
            state: StoredCouponState::Available,
            issued_at: issue.issued_at,
            expires_at: issue.expires_at,
            used_at: None,
        }
    }

    #[tokio::test]
    async fn an_issuable_coupon_is_claimed_until_the_campaign_ends() {
        let mut setup = Setup::new(true).with_coupon(3, -60, 3_600);
        let ends = setup.now + Duration::seconds(3_600);
        setup
            .coupons
            .expect_issue()
            .withf(move |issue, _| issue.expires_at == ends && issue.user_id.get() == 1)
            .times(1)
            .returning(|issue, _| Ok(copy(&issue)));
        let got = setup.build().issue(cmd(), None).await.unwrap();
        assert_eq!(got.id.get(), 9);
    }

    #[tokio::test]
    async fn an_unknown_user_is_reported_before_any_refusal_of_the_coupon() {
        for (remaining, starts) in [(0, -60), (3, 60)] {
            let mut setup = Setup::new(false).with_coupon(remaining, starts, 3_600);
            setup.coupons.expect_holds().returning(|_, _| Ok(false));
            setup.coupons.expect_issue().never();
            let err = setup.build().issue(cmd(), None).await.unwrap_err();
            assert!(matches!(err, CouponError::UserNotFound));
        }
        let mut setup = Setup::new(false);
        setup.coupons.expect_terms().returning(|_| Ok(None));
        let err = setup.build().issue(cmd(), None).await.unwrap_err();
        assert!(matches!(err, CouponError::UserNotFound));
    }

    #[tokio::test]
    async fn an_unknown_user_found_by_the_claim_is_not_found() {
        let mut setup = Setup::new(true).with_coupon(3, -60, 3_600);
        setup.users = MockUserRepository::new();
        setup.users.expect_find().never();
        setup
            .coupons
            .expect_issue()
            .returning(|_, _| Err(IssueError::UserNotFound));
        let err = setup.build().issue(cmd(), None).await.unwrap_err();
        assert!(matches!(err, CouponError::UserNotFound));
    }

    #[tokio::test]
    async fn an_unknown_coupon_is_not_found_and_nothing_is_claimed() {
        let mut setup = Setup::new(true);
        setup.coupons.expect_terms().returning(|_| Ok(None));
        setup.coupons.expect_issue().never();
        let err = setup.build().issue(cmd(), None).await.unwrap_err();
        assert!(matches!(err, CouponError::CouponNotFound));
    }

    #[tokio::test]
    async fn outside_its_window_a_coupon_is_not_issuable_and_nothing_is_claimed() {
        for (starts, ends) in [(60, 120), (-120, -60)] {
            let mut setup = Setup::new(true).with_coupon(3, starts, ends);
            setup.coupons.expect_issue().never();
            let err = setup.build().issue(cmd(), None).await.unwrap_err();
            assert!(matches!(err, CouponError::NotIssuable), "{starts}..{ends}");
        }
    }

    #[tokio::test]
    async fn a_sold_out_coupon_is_refused_without_a_claim() {
        let mut setup = Setup::new(true).with_coupon(0, -60, 60);
        setup.coupons.expect_issue().never();
        setup.coupons.expect_holds().returning(|_, _| Ok(false));
        let err = setup.build().issue(cmd(), None).await.unwrap_err();
        assert!(matches!(err, CouponError::SoldOut));
    }

    #[tokio::test]
    async fn a_holder_asking_for_a_sold_out_coupon_hears_it_is_already_issued() {
        let mut setup = Setup::new(true).with_coupon(0, -60, 60);
        setup.coupons.expect_issue().never();
        setup.coupons.expect_holds().returning(|_, _| Ok(true));
        let err = setup.build().issue(cmd(), None).await.unwrap_err();
        assert!(matches!(err, CouponError::AlreadyIssued));
    }

    #[tokio::test]
    async fn the_stores_refusals_become_the_use_cases() {
        for (refusal, expect_sold_out) in [
            (IssueError::AlreadyIssued, false),
            (IssueError::SoldOut, true),
        ] {
            let mut setup = Setup::new(true).with_coupon(1, -60, 60);
            let mut refusal = Some(refusal);
            setup
                .coupons
                .expect_issue()
                .returning(move |_, _| Err(refusal.take().unwrap()));
            let err = setup.build().issue(cmd(), None).await.unwrap_err();
            if expect_sold_out {
                assert!(matches!(err, CouponError::SoldOut));
            } else {
                assert!(matches!(err, CouponError::AlreadyIssued));
            }
        }
    }

    #[tokio::test]
    async fn listing_needs_a_known_user() {
        let mut setup = Setup::new(false);
        setup.coupons.expect_of_user().never();
        let err = setup
            .build()
            .of_user(UserId::new(1).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, CouponError::UserNotFound));

        let mut setup = Setup::new(true);
        setup.coupons.expect_of_user().returning(|_| Ok(vec![]));
        assert!(
            setup
                .build()
                .of_user(UserId::new(1).unwrap())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn an_unknown_coupon_id_is_not_found() {
        let mut setup = Setup::new(true);
        setup.coupons.expect_find().returning(|_| Ok(None));
        let err = setup
            .build()
            .get(CouponId::new(5).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, CouponError::CouponNotFound));
    }
}
