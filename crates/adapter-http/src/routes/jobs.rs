//! Admin job triggers: run a scheduler's work now.

use actix_web::web;
use application::UseCases;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct ExpiredResponse {
    /// Orders this call moved to EXPIRED.
    pub expired: u64,
}

/// Expires unpaid orders past their payment time now, restoring stock and coupons (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/expire-orders", tag = "admin",
    security(("admin" = [])),
    responses(
        (status = 200, body = ExpiredResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn expire_orders(
    use_cases: web::Data<UseCases>,
) -> Result<web::Json<ExpiredResponse>, ApiError> {
    let expired = use_cases
        .orders
        .expire_due()
        .await
        .map_err(|e| ApiError::unknown(&e))?;
    Ok(web::Json(ExpiredResponse { expired }))
}
