//! Identifiers: positive 64-bit integers, one type per entity so they cannot be mixed up.

use crate::ValidationError;

macro_rules! entity_id {
    ($(#[$doc:meta])* $name:ident, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// The API field name this id is usually given in.
            pub const FIELD: &'static str = $field;

            /// Parses an id: it must be a positive integer.
            ///
            /// # Errors
            /// [`ValidationError`] when `raw` is zero or negative.
            pub fn new(raw: i64) -> Result<Self, ValidationError> {
                Self::parse(raw, $field)
            }

            /// Like [`Self::new`], reporting errors against `field`.
            ///
            /// # Errors
            /// [`ValidationError`] when `raw` is zero or negative.
            pub fn parse(raw: i64, field: &'static str) -> Result<Self, ValidationError> {
                if raw > 0 {
                    Ok(Self(raw))
                } else {
                    Err(ValidationError::new(field, "must be a positive integer"))
                }
            }

            /// Wraps an id read back from the store, which only ever holds valid ids.
            pub const fn from_trusted(raw: i64) -> Self {
                Self(raw)
            }

            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

entity_id!(
    /// A user, and so their point wallet.
    UserId, "userId"
);
entity_id!(
    /// A product of the catalogue.
    ProductId, "productId"
);
entity_id!(
    /// A coupon campaign (the thing that is issued).
    CouponId, "couponId"
);
entity_id!(
    /// One coupon issued to one user.
    UserCouponId, "userCouponId"
);
entity_id!(
    /// An order.
    OrderId, "orderId"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_positive() {
        assert_eq!(UserId::new(1).map(UserId::get), Ok(1));
        assert_eq!(UserId::new(i64::MAX).map(UserId::get), Ok(i64::MAX));
        let err = UserId::new(0).unwrap_err();
        assert_eq!(err.field, "userId");
        assert!(OrderId::new(-7).is_err());
    }
}
