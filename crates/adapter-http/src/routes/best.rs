//! `/api/v1/products/best` and its admin refresh.

use actix_web::web;
use application::UseCases;
use application::sales::{GetBestSellersError, RefreshBestSellersError};
use chrono::{DateTime, NaiveDate, Utc};
use domain::sales::BestSellers;
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};
use crate::refusals::{AdminOnly, Refused};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestSellerItem {
    /// 1 = most sold.
    pub rank: u32,
    pub product_id: i64,
    pub name: String,
    pub price: i64,
    pub stock: i64,
    /// Units in PAID orders paid on the window's business days.
    pub sales_quantity: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BestSellersResponse {
    /// First business day counted (today − 2).
    pub from: NaiveDate,
    /// Today, in the business time zone.
    pub to: NaiveDate,
    /// At most 5, by quantity sold, ties by product id.
    pub items: Vec<BestSellerItem>,
}

impl From<BestSellers> for BestSellersResponse {
    fn from(b: BestSellers) -> Self {
        Self {
            from: b.window.from,
            to: b.window.to,
            items: b
                .items
                .into_iter()
                .zip(1..)
                .map(|(i, rank)| BestSellerItem {
                    rank,
                    product_id: i.product_id.get(),
                    name: i.name.as_str().to_owned(),
                    price: i.price.get(),
                    stock: i.stock.get(),
                    sales_quantity: i.sales_quantity,
                })
                .collect(),
        }
    }
}

impl From<GetBestSellersError> for ApiError {
    fn from(err: GetBestSellersError) -> Self {
        match err {
            GetBestSellersError::Unknown(e) => Self::unknown(&e),
        }
    }
}

impl From<RefreshBestSellersError> for ApiError {
    fn from(err: RefreshBestSellersError) -> Self {
        match err {
            RefreshBestSellersError::Unknown(e) => Self::unknown(&e),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshedResponse {
    pub refreshed_at: DateTime<Utc>,
}

/// The top 5 products over the last 3 business days including today. Served from
/// memory, at most one refresh interval stale.
#[utoipa::path(
    get, path = "/api/v1/products/best", tag = "products",
    operation_id = "getBestSellers",
    responses(
        (status = 200, body = BestSellersResponse),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn best(
    use_cases: web::Data<UseCases>,
) -> Result<web::Json<BestSellersResponse>, ApiError> {
    let ranking = use_cases.get_best_sellers.execute().await?;
    Ok(web::Json(ranking.into()))
}

/// Rolls sales up and refreshes the ranking now (admin).
#[utoipa::path(
    post, path = "/api/v1/admin/jobs/refresh-best-sellers", tag = "admin",
    operation_id = "adminRefreshBestSellers",
    security(("admin" = [])),
    responses(
        (status = 200, body = RefreshedResponse),
        Refused<AdminOnly>,
    )
)]
pub async fn refresh(
    use_cases: web::Data<UseCases>,
) -> Result<web::Json<RefreshedResponse>, ApiError> {
    let ranking = use_cases.refresh_best_sellers.execute().await?;
    Ok(web::Json(RefreshedResponse {
        refreshed_at: ranking.refreshed_at,
    }))
}
