//! `/api/v1/points`: charge, balance, history.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::points::{ChargeCommand, ChargeError, PointQueryError};
use domain::UserId;
use domain::points::{ChargeAmount, Charged, PointHistoryEntry};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acting::{Acting, acting_user};
use crate::auth::Caller;
use crate::dto::{BodyRefusals, IdempotencyKeyHeader, PageDto, UserPageQuery, UserQuery};
use crate::extract::JsonBody;
use crate::idempotency::{NamesUser, Rendered, idempotent};
use crate::problem::ApiError;
use crate::refusals::{Invalid, Keyed, Refused};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChargeRequest {
    /// With end-user authentication on it may be left out: the user is the bearer
    /// token's, and a `userId` given must be that user.
    #[schema(required = true, nullable = false, minimum = 1, example = 1)]
    pub user_id: Option<i64>,
    /// KRW, 1..=1,000,000 per charge.
    #[schema(minimum = 1, maximum = 1_000_000, example = 10_000)]
    pub amount: i64,
}

impl NamesUser for ChargeRequest {
    fn named_user(&mut self) -> &mut Option<i64> {
        &mut self.user_id
    }
}

impl ChargeRequest {
    fn command(&self, user_id: UserId) -> Result<ChargeCommand, ApiError> {
        Ok(ChargeCommand {
            user_id,
            amount: ChargeAmount::new(self.amount)?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    pub user_id: i64,
    /// KRW, 0..=100,000,000.
    pub balance: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PointHistoryItem {
    pub id: i64,
    #[schema(example = "CHARGE")]
    #[serde(rename = "type")]
    pub kind: PointKindDto,
    pub amount: i64,
    pub balance_after: i64,
    /// The paid order, for USE rows.
    pub order_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PointKindDto {
    Charge,
    Use,
}

impl From<PointHistoryEntry> for PointHistoryItem {
    fn from(e: PointHistoryEntry) -> Self {
        Self {
            id: e.id,
            kind: match e.kind {
                domain::points::PointKind::Charge => PointKindDto::Charge,
                domain::points::PointKind::Use => PointKindDto::Use,
            },
            amount: e.amount,
            balance_after: e.balance_after.get(),
            order_id: e.order_id.map(domain::OrderId::get),
            created_at: e.created_at,
        }
    }
}

crate::refusals!(ChargeError {
    UserNotFound, BalanceLimitExceeded;
    unlisted Unknown
});

impl From<ChargeError> for ApiError {
    fn from(err: ChargeError) -> Self {
        match err {
            ChargeError::UserNotFound => Self::not_found("USER_NOT_FOUND", "no user with this id"),
            ChargeError::BalanceLimitExceeded => Self::conflict(
                "BALANCE_LIMIT_EXCEEDED",
                "the balance may not exceed 100,000,000 KRW",
            ),
            ChargeError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(PointQueryError {
    UserNotFound;
    unlisted Unknown
});

impl From<PointQueryError> for ApiError {
    fn from(err: PointQueryError) -> Self {
        match err {
            PointQueryError::UserNotFound => {
                Self::not_found("USER_NOT_FOUND", "no user with this id")
            }
            PointQueryError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn render_charged(charged: &Charged) -> Rendered {
    Rendered::json(
        StatusCode::OK,
        &BalanceResponse {
            user_id: charged.user_id.get(),
            balance: charged.balance.get(),
        },
    )
}

/// Charges points into a user's wallet.
#[utoipa::path(
    post, path = "/api/v1/points/charge", tag = "points",
    operation_id = "chargePoints",
    request_body = ChargeRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, body = BalanceResponse),
        Refused<(Invalid, Acting, Keyed, ChargeError)>,
        BodyRefusals,
    )
)]
pub async fn charge(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    req: HttpRequest,
    body: JsonBody<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = acting_user(&use_cases, &caller, body.user_id).await?;
    let cmd = body.command(user_id)?;
    idempotent(
        &use_cases,
        &req,
        cmd.user_id,
        &*body,
        render_charged,
        |completion| use_cases.charge_points.execute(cmd, completion),
    )
    .await
}

/// A user's balance.
#[utoipa::path(
    get, path = "/api/v1/points", tag = "points",
    operation_id = "getBalance",
    params(UserQuery),
    responses(
        (status = 200, body = BalanceResponse),
        Refused<(Invalid, Acting, PointQueryError)>,
    )
)]
pub async fn balance(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    query: web::Query<UserQuery>,
) -> Result<web::Json<BalanceResponse>, ApiError> {
    let user_id = acting_user(&use_cases, &caller, query.user_id).await?;
    let balance = use_cases.get_balance.execute(user_id).await?;
    Ok(web::Json(BalanceResponse {
        user_id: user_id.get(),
        balance: balance.get(),
    }))
}

/// A user's point history, newest first.
#[utoipa::path(
    get, path = "/api/v1/points/history", tag = "points",
    operation_id = "listPointHistory",
    params(UserPageQuery),
    responses(
        (status = 200, body = PageDto<PointHistoryItem>),
        Refused<(Invalid, Acting, PointQueryError)>,
    )
)]
pub async fn history(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    query: web::Query<UserPageQuery>,
) -> Result<web::Json<PageDto<PointHistoryItem>>, ApiError> {
    let user_id = acting_user(&use_cases, &caller, query.user_id).await?;
    let page = query.page()?;
    let page = use_cases.get_point_history.execute(user_id, page).await?;
    Ok(web::Json(PageDto::from_page(page, PointHistoryItem::from)))
}
