//! Coupon campaigns and first-come-first-served issuing: one use case per action.
//!
//! - [`CreateCoupon`]: an operator opens a campaign;
//! - [`GetCoupon`]: a campaign with its exact remaining quantity;
//! - [`IssueCoupon`]: one copy to a user, first come first served;
//! - [`ListUserCoupons`]: a user's copies, each with its status now.

mod create;
mod get;
mod issue;
mod list;

pub use create::{CreateCoupon, CreateCouponCommand, CreateCouponError};
pub use get::{GetCoupon, GetCouponError};
pub use issue::{IssueCoupon, IssueCouponCommand, IssueCouponError};
pub use list::{HeldCoupon, ListUserCoupons, ListUserCouponsError};
