//! `/api/v1/products/best` and its admin refresh.
//!
//! The ranking changes once per refresh, so its answer is rendered once per ranking
//! ([`Rendered`]): the JSON bytes and their `ETag` (a digest of the bytes, so every
//! instance holding the same ranking gives the same tag). A request whose `If-None-Match`
//! names it gets 304 with no body.

use std::sync::{Arc, RwLock};

use actix_web::http::header::{self, EntityTag, HeaderValue, IfNoneMatch};
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::sales::{GetBestSellersError, RefreshBestSellersError};
use chrono::{DateTime, NaiveDate, Utc};
use domain::sales::BestSellers;
use serde::Serialize;
use sha2::Digest as _;
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

impl From<&BestSellers> for BestSellersResponse {
    fn from(b: &BestSellers) -> Self {
        Self {
            from: b.window.from,
            to: b.window.to,
            items: b
                .items
                .iter()
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

static JSON: HeaderValue = HeaderValue::from_static("application/json");

/// One ranking's answer, rendered.
#[derive(Debug)]
struct Answer {
    /// The ranking it renders (compared by pointer: a refresh makes a new one).
    ranking: Arc<BestSellers>,
    body: web::Bytes,
    etag: EntityTag,
    /// `etag` as sent, formatted once.
    etag_header: HeaderValue,
}

/// The last rendered answer of one server.
#[derive(Debug, Default)]
pub struct Rendered(RwLock<Option<Arc<Answer>>>);

impl Rendered {
    /// The answer for `ranking`: the one held when it renders the same ranking, else
    /// rendered now and held.
    fn answer(&self, ranking: Arc<BestSellers>) -> Result<Arc<Answer>, ApiError> {
        if let Ok(held) = self.0.read()
            && let Some(answer) = held.as_ref()
            && Arc::ptr_eq(&answer.ranking, &ranking)
        {
            return Ok(Arc::clone(answer));
        }
        let body = serde_json::to_vec(&BestSellersResponse::from(&*ranking))
            .map_err(|e| ApiError::unknown(&anyhow::Error::new(e)))?;
        let digest = sha2::Sha256::digest(&body);
        let tag = digest
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        let etag = EntityTag::new_strong(tag);
        let etag_header = HeaderValue::from_str(&etag.to_string())
            .map_err(|e| ApiError::unknown(&anyhow::Error::new(e)))?;
        let answer = Arc::new(Answer {
            ranking,
            body: web::Bytes::from(body),
            etag,
            etag_header,
        });
        if let Ok(mut held) = self.0.write() {
            *held = Some(Arc::clone(&answer));
        }
        Ok(answer)
    }
}

/// The top 5 products over the last 3 business days including today. Served from
/// memory, at most one refresh interval stale, with an `ETag`; `If-None-Match` naming
/// the current one gets 304 with no body.
#[utoipa::path(
    get, path = "/api/v1/products/best", tag = "products",
    operation_id = "getBestSellers",
    params(
        ("If-None-Match" = Option<String>, Header,
         description = "An `ETag` of an earlier answer: 304 while the ranking is the same"),
    ),
    responses(
        (status = 200, body = BestSellersResponse,
         headers(("ETag" = String, description = "Names this ranking's answer"))),
        (status = 304, description = "The ranking is the one `If-None-Match` names; no body",
         headers(("ETag" = String, description = "Names this ranking's answer"))),
        (status = 503, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn best(
    request: HttpRequest,
    use_cases: web::Data<UseCases>,
    rendered: web::Data<Rendered>,
) -> Result<HttpResponse, ApiError> {
    let ranking = use_cases.get_best_sellers.execute().await?;
    let answer = rendered.answer(ranking)?;
    // Parsed only when sent: most requests carry none.
    let unchanged = request.headers().contains_key(header::IF_NONE_MATCH)
        && match <IfNoneMatch as header::Header>::parse(&request) {
            Ok(IfNoneMatch::Any) => true,
            Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(&answer.etag)),
            Err(_) => false,
        };
    let etag = (header::ETAG, answer.etag_header.clone());
    Ok(if unchanged {
        HttpResponse::NotModified().insert_header(etag).finish()
    } else {
        HttpResponse::Ok()
            .insert_header(etag)
            .insert_header((header::CONTENT_TYPE, JSON.clone()))
            .body(answer.body.clone())
    })
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
