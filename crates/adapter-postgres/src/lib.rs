//! PostgreSQL adapters: diesel + r2d2 implementations of the domain's persistence
//! ports, and the embedded migrations.
//!
//! Diesel is synchronous, so every store method checks a connection out and runs its
//! queries (or its one transaction) inside `spawn_blocking`, via [`pool::run`]; no
//! diesel work ever happens on an async worker thread. Row structs and diesel types
//! stay private to this crate.

mod coupons;
mod error;
mod idempotency;
mod listen;
pub mod migrate;
mod orders;
mod outbox;
mod points;
pub mod pool;
mod products;
mod purge;
mod retry;
mod sales;
mod schema;
mod statement;
#[cfg(feature = "test-support")]
pub mod test_support;
mod users;

pub use coupons::{IssueBatcher, IssueBatcherLimits, PgCouponStore};
pub use idempotency::PgIdempotencyStore;
pub use listen::PgOutboxListener;
pub use migrate::run_migrations;
pub use orders::PgOrderStore;
pub use outbox::PgOutboxStore;
pub use points::PgPointStore;
pub use pool::{PgHealthCheck, PgManager, PgPool, PoolConfig, connect};
pub use products::PgProductRepository;
pub use retry::{TransactionRetries, register_metrics, transaction_retries};
pub use sales::PgSalesStore;
pub use users::PgUserRepository;
