//! The shop's domain: entities, value objects parsed once at the edge, the rules
//! that decide business outcomes, and the port traits that adapters implement.
//!
//! This crate knows no I/O framework. Everything here is plain data and pure
//! functions, so the rules can be tested without a database or a network.

pub mod coupon;
pub mod error;
pub mod id;
pub mod idempotency;
pub mod identity;
pub mod money;
pub mod order;
pub mod outbox;
pub mod page;
pub mod points;
pub mod ports;
pub mod product;
pub mod sales;
pub mod user;

pub use error::{StoreUnavailable, ValidationError};
pub use id::{CouponId, OrderId, ProductId, UserCouponId, UserId};
pub use money::Money;
pub use page::{Page, PageRequest};
