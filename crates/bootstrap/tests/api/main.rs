//! End-to-end tests: the real application on a random port, its own database per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod admin;
mod auth;
mod bad_input;
mod best;
mod coupons;
mod database_tls;
mod dataplatform;
mod helpers;
mod idempotency;
mod idle;
mod instances;
mod jetstream;
mod ops;
mod orders;
mod pgbouncer;
mod points;
mod products;
mod replica;
mod user_routes;
mod user_subjects;
mod users;
