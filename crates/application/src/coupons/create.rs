//! Creating a campaign.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::ValidationError;
use domain::coupon::{Coupon, CouponName, CouponQuantity, Discount, NewCoupon};
use domain::ports::{Clock, CouponStore};

/// Opens a coupon campaign (operators).
#[derive(Clone)]
pub struct CreateCoupon {
    coupons: Arc<dyn CouponStore>,
    clock: Arc<dyn Clock>,
}

/// A new campaign's parts, each valid on its own; the window is checked against the use
/// case's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateCouponCommand {
    pub name: CouponName,
    pub discount: Discount,
    pub total_quantity: CouponQuantity,
    /// `None`: the campaign starts now.
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateCouponError {
    /// The window is refused (`startsAt` or `endsAt` out of range, or not ordered); the
    /// error names the field.
    #[error(transparent)]
    InvalidWindow(ValidationError),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl CreateCoupon {
    pub fn new(coupons: Arc<dyn CouponStore>, clock: Arc<dyn Clock>) -> Self {
        Self { coupons, clock }
    }

    /// Builds the campaign ([`NewCoupon::new`], starting now unless told otherwise) and
    /// stores it.
    ///
    /// # Errors
    /// - [`CreateCouponError::InvalidWindow`] when the window is refused (nothing is
    ///   stored).
    /// - [`CreateCouponError::Unknown`] when the store fails.
    #[tracing::instrument(name = "create_coupon", skip_all)]
    pub async fn execute(&self, cmd: CreateCouponCommand) -> Result<Coupon, CreateCouponError> {
        let now = self.clock.now();
        let coupon = NewCoupon::new(
            cmd.name,
            cmd.discount,
            cmd.total_quantity,
            cmd.starts_at,
            cmd.ends_at,
            now,
        )
        .map_err(CreateCouponError::InvalidWindow)?;
        Ok(self.coupons.create(coupon, now).await?)
    }
}

crate::debug_opaque!(CreateCoupon);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, SubsecRound};
    use domain::CouponId;
    use domain::ports::{MockClock, MockCouponStore};

    fn clock(now: DateTime<Utc>) -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(now);
        Arc::new(clock)
    }

    fn cmd(starts_at: Option<DateTime<Utc>>, ends_at: DateTime<Utc>) -> CreateCouponCommand {
        CreateCouponCommand {
            name: CouponName::new("Hot").unwrap(),
            discount: Discount::Fixed(500),
            total_quantity: CouponQuantity::new(10).unwrap(),
            starts_at,
            ends_at,
        }
    }

    #[tokio::test]
    async fn a_campaign_without_a_start_starts_at_the_use_cases_clock() {
        let now = Utc::now().trunc_subsecs(6);
        let ends = now + Duration::days(1);
        let mut coupons = MockCouponStore::new();
        coupons
            .expect_create()
            .withf(move |new, at| new.starts_at == now && new.ends_at == ends && *at == now)
            .times(1)
            .returning(|new, _| {
                Ok(Coupon {
                    id: CouponId::new(4).unwrap(),
                    name: new.name,
                    discount: new.discount,
                    total_quantity: new.total_quantity.get(),
                    remaining_quantity: new.total_quantity.get(),
                    starts_at: new.starts_at,
                    ends_at: new.ends_at,
                })
            });
        let create = CreateCoupon::new(Arc::new(coupons), clock(now));
        let coupon = create.execute(cmd(None, ends)).await.unwrap();
        assert_eq!((coupon.id.get(), coupon.starts_at), (4, now));
    }

    #[tokio::test]
    async fn a_window_ending_before_the_clock_is_refused_on_ends_at_and_nothing_is_stored() {
        let now = Utc::now();
        let mut coupons = MockCouponStore::new();
        coupons.expect_create().never();
        let create = CreateCoupon::new(Arc::new(coupons), clock(now));
        let err = create
            .execute(cmd(None, now - Duration::seconds(1)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CreateCouponError::InvalidWindow(e) if e.field == "endsAt"),
            "{err:?}"
        );
    }
}
