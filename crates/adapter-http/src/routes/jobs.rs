//! Admin job triggers: run a scheduler's work now.

use actix_web::web;
use application::UseCases;
use application::orders::ExpireDueOrdersError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::ApiError;
use crate::refusals::{AdminOnly, Refused};

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiredResponse {
    /// Orders this call moved to EXPIRED.
    pub expired: u64,
}

/// Expires unpaid orders past their payment time now, restoring stock and coupons (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/expire-orders", tag = "admin",
    operation_id = "adminExpireOrders",
    security(("admin" = [])),
    responses(
        (status = 200, body = ExpiredResponse),
        Refused<AdminOnly>,
    )
)]
pub async fn expire_orders(
    use_cases: web::Data<UseCases>,
) -> Result<web::Json<ExpiredResponse>, ApiError> {
    let expired = use_cases.expire_due_orders.execute().await?;
    Ok(web::Json(ExpiredResponse { expired }))
}

impl From<ExpireDueOrdersError> for ApiError {
    fn from(err: ExpireDueOrdersError) -> Self {
        match err {
            ExpireDueOrdersError::Unknown(e) => Self::unknown(&e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxResponse {
    /// Not delivered, no failed attempt yet.
    pub pending: i64,
    pub delivered: i64,
    /// Not delivered, last attempt failed (still retried with backoff).
    pub failed: i64,
}

/// Data-platform delivery counts (admin).
#[utoipa::path(
    get, path = "/api/v1/admin/outbox", tag = "admin",
    operation_id = "adminOutboxCounts",
    security(("admin" = [])),
    responses(
        (status = 200, body = OutboxResponse),
        Refused<AdminOnly>,
    )
)]
pub async fn outbox(use_cases: web::Data<UseCases>) -> Result<web::Json<OutboxResponse>, ApiError> {
    let counts = use_cases
        .deliver_events
        .counts()
        .await
        .map_err(|e| ApiError::unknown(&e))?;
    Ok(web::Json(OutboxResponse {
        pending: counts.pending,
        delivered: counts.delivered,
        failed: counts.failed,
    }))
}
