//! Reading a campaign.

use std::sync::Arc;

use domain::CouponId;
use domain::coupon::Coupon;
use domain::ports::CouponStore;

/// Reads a campaign with its exact remaining quantity.
#[derive(Clone)]
pub struct GetCoupon {
    coupons: Arc<dyn CouponStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum GetCouponError {
    #[error("coupon not found")]
    CouponNotFound,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetCoupon {
    pub fn new(coupons: Arc<dyn CouponStore>) -> Self {
        Self { coupons }
    }

    /// # Errors
    /// [`GetCouponError::CouponNotFound`] for an unknown id.
    #[tracing::instrument(name = "get_coupon", skip_all, fields(coupon_id = %id))]
    pub async fn execute(&self, id: CouponId) -> Result<Coupon, GetCouponError> {
        self.coupons
            .find(id)
            .await?
            .ok_or(GetCouponError::CouponNotFound)
    }
}

crate::debug_opaque!(GetCoupon);

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::MockCouponStore;

    #[tokio::test]
    async fn an_unknown_coupon_id_is_not_found() {
        let mut coupons = MockCouponStore::new();
        coupons.expect_find().times(1).returning(|_| Ok(None));
        let err = GetCoupon::new(Arc::new(coupons))
            .execute(CouponId::new(5).unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, GetCouponError::CouponNotFound));
    }
}
