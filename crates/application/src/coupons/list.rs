//! Listing a user's coupons.

use std::sync::Arc;

use domain::UserId;
use domain::coupon::{UserCoupon, UserCouponStatus};
use domain::ports::{Clock, CouponStore};
use domain::user::ForUser;

/// Lists a user's coupons, each with its status at the use case's clock.
#[derive(Clone)]
pub struct ListUserCoupons {
    coupons: Arc<dyn CouponStore>,
    clock: Arc<dyn Clock>,
}

/// A copy the user holds and its status now ([`UserCoupon::status_at`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCoupon {
    pub coupon: UserCoupon,
    pub status: UserCouponStatus,
}

#[derive(Debug, thiserror::Error)]
pub enum ListUserCouponsError {
    #[error("user not found")]
    UserNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl ListUserCoupons {
    pub fn new(coupons: Arc<dyn CouponStore>, clock: Arc<dyn Clock>) -> Self {
        Self { coupons, clock }
    }

    /// The user's coupons, oldest first, in one read that also tells an unknown user
    /// apart.
    ///
    /// # Errors
    /// [`ListUserCouponsError::UserNotFound`] for an unknown user.
    #[tracing::instrument(name = "list_user_coupons", skip_all, fields(user_id = %user_id))]
    pub async fn execute(&self, user_id: UserId) -> Result<Vec<HeldCoupon>, ListUserCouponsError> {
        match self.coupons.of_user(user_id).await? {
            ForUser::UnknownUser => Err(ListUserCouponsError::UserNotFound),
            ForUser::Found(coupons) => {
                let now = self.clock.now();
                Ok(coupons
                    .into_iter()
                    .map(|coupon| HeldCoupon {
                        status: coupon.status_at(now),
                        coupon,
                    })
                    .collect())
            }
        }
    }
}

crate::debug_opaque!(ListUserCoupons);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, Utc};
    use domain::coupon::{CouponName, Discount, StoredCouponState};
    use domain::ports::{MockClock, MockCouponStore};
    use domain::{CouponId, UserCouponId};

    fn list(coupons: MockCouponStore, now: DateTime<Utc>) -> ListUserCoupons {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        ListUserCoupons::new(Arc::new(coupons), Arc::new(clock))
    }

    #[tokio::test]
    async fn listing_is_one_read_that_tells_an_unknown_user_apart() {
        let mut coupons = MockCouponStore::new();
        coupons
            .expect_of_user()
            .times(1)
            .returning(|_| Ok(ForUser::UnknownUser));
        let err = list(coupons, Utc::now())
            .execute(UserId::new(1).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, ListUserCouponsError::UserNotFound));

        let mut coupons = MockCouponStore::new();
        coupons
            .expect_of_user()
            .times(1)
            .returning(|_| Ok(ForUser::Found(vec![])));
        assert!(
            list(coupons, Utc::now())
                .execute(UserId::new(1).unwrap())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn each_copy_is_judged_at_the_use_cases_clock() {
        let now = Utc::now();
        let copy = move |id, expires_in| UserCoupon {
            id: UserCouponId::new(id).unwrap(),
            user_id: UserId::new(1).unwrap(),
            coupon_id: CouponId::new(id).unwrap(),
            name: CouponName::new("Hot").unwrap(),
            discount: Discount::Fixed(500),
            state: StoredCouponState::Available,
            issued_at: now - Duration::days(1),
            expires_at: now + Duration::seconds(expires_in),
            used_at: None,
        };
        let mut coupons = MockCouponStore::new();
        coupons
            .expect_of_user()
            .times(1)
            .returning(move |_| Ok(ForUser::Found(vec![copy(1, 60), copy(2, 0)])));
        let held = list(coupons, now)
            .execute(UserId::new(1).unwrap())
            .await
            .unwrap();
        let statuses: Vec<_> = held.iter().map(|h| (h.coupon.id.get(), h.status)).collect();
        assert_eq!(
            statuses,
            [
                (1, UserCouponStatus::Available),
                (2, UserCouponStatus::Expired)
            ]
        );
    }
}
