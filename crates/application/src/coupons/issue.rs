//! Issuing a coupon, first come first served.

use std::sync::Arc;

use domain::coupon::{IssueRefusal, UserCoupon};
use domain::idempotency::Completion;
use domain::ports::{Clock, CouponStore, IssueError};
use domain::user::ForUser;
use domain::{CouponId, UserId};

/// Issues one copy of a campaign to a user, first come first served.
#[derive(Clone)]
pub struct IssueCoupon {
    coupons: Arc<dyn CouponStore>,
    clock: Arc<dyn Clock>,
}

/// A request to issue a coupon to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueCouponCommand {
    pub user_id: UserId,
    pub coupon_id: CouponId,
}

#[derive(Debug, thiserror::Error)]
pub enum IssueCouponError {
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
    /// Too many issues are waiting; nothing changed, retry shortly.
    #[error("too many coupon issues are in progress; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl IssueCoupon {
    pub fn new(coupons: Arc<dyn CouponStore>, clock: Arc<dyn Clock>) -> Self {
        Self { coupons, clock }
    }

    /// Issues one copy to the user, first come first served; with a `completion`, the
    /// idempotency key's response is stored with the copy.
    ///
    /// The campaign's window and remaining quantity are checked from its terms (a
    /// lock-free read the store may cache), so refusals (a sold-out campaign above all)
    /// cost no write and no lock; only then does the store claim a unit atomically. The
    /// user's existence is not read beforehand: the store's issue checks it in the
    /// statement that writes the copy. Only a refusal decided here reads the user's
    /// holding (one read), so that an unknown user always hears `UserNotFound` first and
    /// a holder hears `AlreadyIssued` rather than `SoldOut`.
    ///
    /// # Errors
    /// In this order: [`IssueCouponError::UserNotFound`],
    /// [`IssueCouponError::CouponNotFound`], [`IssueCouponError::NotIssuable`],
    /// [`IssueCouponError::AlreadyIssued`] / [`IssueCouponError::SoldOut`];
    /// [`IssueCouponError::Overloaded`] when the store has too many issues waiting
    /// (nothing changed).
    #[tracing::instrument(name = "issue_coupon", skip_all, fields(user_id = %cmd.user_id, coupon_id = %cmd.coupon_id))]
    pub async fn execute(
        &self,
        cmd: IssueCouponCommand,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, IssueCouponError> {
        let now = self.clock.now();
        let refusal = match self.coupons.terms(cmd.coupon_id).await? {
            None => IssueCouponError::CouponNotFound,
            Some(coupon) => match coupon.check_issuable(now) {
                Ok(()) => {
                    return self
                        .coupons
                        .issue(coupon.issue_to(cmd.user_id, now), completion)
                        .await
                        .map_err(|err| match err {
                            IssueError::UserNotFound => IssueCouponError::UserNotFound,
                            IssueError::AlreadyIssued => IssueCouponError::AlreadyIssued,
                            IssueError::SoldOut => IssueCouponError::SoldOut,
                            IssueError::Overloaded => IssueCouponError::Overloaded,
                            IssueError::Unknown(e) => IssueCouponError::Unknown(e),
                        });
                }
                Err(IssueRefusal::NotIssuable) => IssueCouponError::NotIssuable,
                Err(IssueRefusal::SoldOut) => IssueCouponError::SoldOut,
            },
        };
        match self.coupons.holds(cmd.user_id, cmd.coupon_id).await? {
            ForUser::UnknownUser => Err(IssueCouponError::UserNotFound),
            // A holder asking again learns they hold it, not that it is gone.
            ForUser::Found(true) if matches!(refusal, IssueCouponError::SoldOut) => {
                Err(IssueCouponError::AlreadyIssued)
            }
            ForUser::Found(_) => Err(refusal),
        }
    }
}

crate::debug_opaque!(IssueCoupon);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use domain::UserCouponId;
    use domain::coupon::{Coupon, CouponName, Discount};
    use domain::ports::{MockClock, MockCouponStore};

    struct Setup {
        now: DateTime<Utc>,
        coupons: MockCouponStore,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                now: Utc::now(),
                coupons: MockCouponStore::new(),
            }
        }

        fn with_coupon(mut self, remaining: i64, starts_in: i64, ends_in: i64) -> Self {
            let now = self.now;
            self.coupons.expect_terms().times(1).returning(move |id| {
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

        fn without_coupon(mut self) -> Self {
            self.coupons.expect_terms().times(1).returning(|_| Ok(None));
            self
        }

        /// The one read a refusal decided before any write makes.
        fn holding(mut self, holding: ForUser<bool>) -> Self {
            self.coupons
                .expect_holds()
                .times(1)
                .returning(move |_, _| Ok(holding.clone()));
            self
        }

        fn build(self) -> IssueCoupon {
            let mut clock = MockClock::new();
            clock.expect_now().return_const(self.now);
            IssueCoupon::new(Arc::new(self.coupons), Arc::new(clock))
        }
    }

    fn cmd() -> IssueCouponCommand {
        IssueCouponCommand {
            user_id: UserId::new(1).unwrap(),
            coupon_id: CouponId::new(2).unwrap(),
        }
    }

    // A mock without an expectation for a method fails the test when it is called, so
    // these tests also prove that no other port call is made.

    #[tokio::test]
    async fn an_issue_is_the_terms_then_one_claim_with_no_read_of_the_user() {
        let mut setup = Setup::new().with_coupon(3, -60, 3_600);
        let ends = setup.now + Duration::seconds(3_600);
        setup
            .coupons
            .expect_issue()
            .withf(move |issue, _| issue.expires_at == ends && issue.user_id.get() == 1)
            .times(1)
            .returning(|issue, _| Ok(issue.copy(UserCouponId::new(9).unwrap())));
        setup.coupons.expect_holds().never();
        let got = setup.build().execute(cmd(), None).await.unwrap();
        assert_eq!(got.id.get(), 9);
    }

    #[tokio::test]
    async fn an_unknown_user_is_reported_before_any_refusal_of_the_coupon() {
        for (remaining, starts) in [(0, -60), (3, 60)] {
            let mut setup = Setup::new()
                .with_coupon(remaining, starts, 3_600)
                .holding(ForUser::UnknownUser);
            setup.coupons.expect_issue().never();
            let err = setup.build().execute(cmd(), None).await.unwrap_err();
            assert!(matches!(err, IssueCouponError::UserNotFound), "{err:?}");
        }
        let mut setup = Setup::new().without_coupon().holding(ForUser::UnknownUser);
        setup.coupons.expect_issue().never();
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::UserNotFound), "{err:?}");
    }

    #[tokio::test]
    async fn an_unknown_user_found_by_the_claim_is_not_found_without_another_read() {
        let mut setup = Setup::new().with_coupon(3, -60, 3_600);
        setup.coupons.expect_holds().never();
        setup
            .coupons
            .expect_issue()
            .times(1)
            .returning(|_, _| Err(IssueError::UserNotFound));
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::UserNotFound), "{err:?}");
    }

    #[tokio::test]
    async fn an_unknown_coupon_is_not_found_and_nothing_is_claimed() {
        let mut setup = Setup::new().without_coupon().holding(ForUser::Found(false));
        setup.coupons.expect_issue().never();
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::CouponNotFound), "{err:?}");
    }

    #[tokio::test]
    async fn outside_its_window_a_coupon_is_not_issuable_even_to_a_holder() {
        for (starts, ends, holds) in [(60, 120, false), (-120, -60, false), (-120, -60, true)] {
            let mut setup = Setup::new()
                .with_coupon(3, starts, ends)
                .holding(ForUser::Found(holds));
            setup.coupons.expect_issue().never();
            let err = setup.build().execute(cmd(), None).await.unwrap_err();
            assert!(
                matches!(err, IssueCouponError::NotIssuable),
                "{starts}..{ends}"
            );
        }
    }

    #[tokio::test]
    async fn a_sold_out_coupon_is_refused_without_a_claim() {
        let mut setup = Setup::new()
            .with_coupon(0, -60, 60)
            .holding(ForUser::Found(false));
        setup.coupons.expect_issue().never();
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::SoldOut), "{err:?}");
    }

    #[tokio::test]
    async fn a_holder_asking_for_a_sold_out_coupon_hears_it_is_already_issued() {
        let mut setup = Setup::new()
            .with_coupon(0, -60, 60)
            .holding(ForUser::Found(true));
        setup.coupons.expect_issue().never();
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::AlreadyIssued), "{err:?}");
    }

    #[tokio::test]
    async fn the_stores_refusals_become_the_use_cases() {
        for (refusal, expect_sold_out) in [
            (IssueError::AlreadyIssued, false),
            (IssueError::SoldOut, true),
        ] {
            let mut setup = Setup::new().with_coupon(1, -60, 60);
            let mut refusal = Some(refusal);
            setup
                .coupons
                .expect_issue()
                .times(1)
                .returning(move |_, _| Err(refusal.take().unwrap()));
            setup.coupons.expect_holds().never();
            let err = setup.build().execute(cmd(), None).await.unwrap_err();
            if expect_sold_out {
                assert!(matches!(err, IssueCouponError::SoldOut));
            } else {
                assert!(matches!(err, IssueCouponError::AlreadyIssued));
            }
        }
    }

    #[tokio::test]
    async fn an_overloaded_store_is_overloaded_not_an_unknown_failure() {
        let mut setup = Setup::new().with_coupon(1, -60, 60);
        setup
            .coupons
            .expect_issue()
            .times(1)
            .returning(|_, _| Err(IssueError::Overloaded));
        setup.coupons.expect_holds().never();
        let err = setup.build().execute(cmd(), None).await.unwrap_err();
        assert!(matches!(err, IssueCouponError::Overloaded), "{err:?}");
    }
}
