//! End-to-end tests: the real application on a random port, its own database per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod bad_input;
mod helpers;
mod idempotency;
mod ops;
mod points;
mod users;
