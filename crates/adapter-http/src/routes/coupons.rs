//! `/api/v1/coupons` and the admin coupon route.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::coupons::{CouponError, IssueCommand};
use chrono::{DateTime, FixedOffset, Utc};
use domain::coupon::{Coupon, CouponName, CouponQuantity, Discount, NewCoupon, UserCoupon};
use domain::{CouponId, UserId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::dto::{BodyRefusals, IdempotencyKeyHeader, UserQuery, path_id};
use crate::extract::JsonBody;
use crate::idempotency::{Rendered, idempotent};
use crate::problem::{ApiError, Problem};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DiscountType {
    Fixed,
    Rate,
}

fn discount_type(d: Discount) -> DiscountType {
    match d {
        Discount::Fixed(_) => DiscountType::Fixed,
        Discount::Rate(_) => DiscountType::Rate,
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CouponResponse {
    pub id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    /// KRW off (FIXED) or percent off (RATE).
    pub discount_value: i64,
    pub total_quantity: i64,
    /// Exact, at the moment of the query.
    pub remaining_quantity: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl From<Coupon> for CouponResponse {
    fn from(c: Coupon) -> Self {
        Self {
            id: c.id.get(),
            name: c.name.as_str().to_owned(),
            discount_type: discount_type(c.discount),
            discount_value: c.discount.value(),
            total_quantity: c.total_quantity,
            remaining_quantity: c.remaining_quantity,
            starts_at: c.starts_at,
            ends_at: c.ends_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserCouponStatusDto {
    Available,
    Used,
    Expired,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCouponResponse {
    pub id: i64,
    pub user_id: i64,
    pub coupon_id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    /// EXPIRED once `expiresAt` has passed.
    pub status: UserCouponStatusDto,
    pub issued_at: DateTime<Utc>,
    /// The campaign's end: usable until then.
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl UserCouponResponse {
    fn at(c: &UserCoupon, now: DateTime<Utc>) -> Self {
        use domain::coupon::UserCouponStatus as S;
        Self {
            id: c.id.get(),
            user_id: c.user_id.get(),
            coupon_id: c.coupon_id.get(),
            name: c.name.as_str().to_owned(),
            discount_type: discount_type(c.discount),
            discount_value: c.discount.value(),
            status: match c.status_at(now) {
                S::Available => UserCouponStatusDto::Available,
                S::Used => UserCouponStatusDto::Used,
                S::Expired => UserCouponStatusDto::Expired,
            },
            issued_at: c.issued_at,
            expires_at: c.expires_at,
            used_at: c.used_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserCouponList {
    pub items: Vec<UserCouponResponse>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
    #[schema(minimum = 1)]
    pub coupon_id: i64,
}

impl TryFrom<&IssueRequest> for IssueCommand {
    type Error = ApiError;

    fn try_from(req: &IssueRequest) -> Result<Self, ApiError> {
        Ok(Self {
            user_id: UserId::new(req.user_id)?,
            coupon_id: CouponId::new(req.coupon_id)?,
        })
    }
}

/// `discountType` of a new campaign: read as text, so another value is a 400 on the field.
fn discount_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["FIXED", "RATE"]))
        .description(Some("FIXED (KRW off) or RATE (percent off)."))
        .examples(["FIXED"])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateCouponRequest {
    /// 1–200 characters after trimming white space; no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000-\u001F\u007F-\u009F]*$",
        example = "Welcome 3,000 KRW off"
    )]
    pub name: String,
    #[schema(schema_with = discount_type_schema)]
    pub discount_type: String,
    /// FIXED: KRW off, 1–1,000,000,000; RATE: percent off, 1–100.
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 3000)]
    pub discount_value: i64,
    #[schema(minimum = 1, maximum = 10_000_000, example = 100)]
    pub total_quantity: i64,
    /// Defaults to now. Years 1970–9999; kept to the microsecond.
    #[schema(example = "2026-12-01T00:00:00+09:00")]
    pub starts_at: Option<DateTime<FixedOffset>>,
    /// At least a microsecond after startsAt (after now when startsAt is absent). Years
    /// 1970–9999.
    #[schema(example = "2099-12-31T23:59:59+09:00")]
    pub ends_at: DateTime<FixedOffset>,
}

/// `Retry-After` of an issue refused because too many are waiting: the queue of one
/// instance drains in well under a second.
const RETRY_AFTER_SECS: u32 = 1;

impl From<CouponError> for ApiError {
    fn from(err: CouponError) -> Self {
        match err {
            CouponError::UserNotFound => Self::not_found("USER_NOT_FOUND", "no user with this id"),
            CouponError::CouponNotFound => {
                Self::not_found("COUPON_NOT_FOUND", "no coupon with this id")
            }
            CouponError::NotIssuable => Self::conflict(
                "COUPON_NOT_ISSUABLE",
                "the coupon can only be issued between its startsAt and endsAt",
            ),
            CouponError::SoldOut => {
                Self::conflict("COUPON_SOLD_OUT", "no copies of this coupon remain")
            }
            CouponError::AlreadyIssued => Self::conflict(
                "COUPON_ALREADY_ISSUED",
                "the user already holds this coupon",
            ),
            CouponError::Overloaded => Self::overloaded(
                "too many coupon issues are waiting in this instance; retry after Retry-After seconds",
                RETRY_AFTER_SECS,
            ),
            CouponError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn render_issued(issued: &UserCoupon) -> Rendered {
    // Freshly issued: its status is AVAILABLE, judged at issue time.
    Rendered::json(
        StatusCode::CREATED,
        &UserCouponResponse::at(issued, issued.issued_at),
    )
}

/// Issues a coupon to a user, first come first served.
#[utoipa::path(
    post, path = "/api/v1/coupons/issue", tag = "coupons",
    operation_id = "issueCoupon",
    request_body = IssueRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 201, body = UserCouponResponse),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND, COUPON_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "COUPON_SOLD_OUT, COUPON_ALREADY_ISSUED, COUPON_NOT_ISSUABLE, IDEMPOTENCY_KEY_IN_USE", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "IDEMPOTENCY_KEY_REUSED", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
        (status = 503, description = "SERVICE_UNAVAILABLE: too many issues are waiting in this instance, or the database is unavailable; nothing changed (an Idempotency-Key is released)", body = Problem, content_type = "application/problem+json",
         headers(("Retry-After" = u32, description = "seconds to wait before retrying (on an overload)"))),
    )
)]
pub async fn issue(
    use_cases: web::Data<UseCases>,
    req: HttpRequest,
    body: JsonBody<IssueRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = IssueCommand::try_from(&*body)?;
    idempotent(
        &use_cases,
        &req,
        cmd.user_id,
        &*body,
        render_issued,
        |completion| use_cases.coupons.issue(cmd, completion),
    )
    .await
}

/// A user's coupons, oldest first.
#[utoipa::path(
    get, path = "/api/v1/coupons", tag = "coupons",
    operation_id = "listUserCoupons",
    params(UserQuery),
    responses(
        (status = 200, body = UserCouponList),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "USER_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn of_user(
    use_cases: web::Data<UseCases>,
    query: web::Query<UserQuery>,
) -> Result<web::Json<UserCouponList>, ApiError> {
    let coupons = use_cases.coupons.of_user(query.user()?).await?;
    let now = use_cases.coupons.now();
    Ok(web::Json(UserCouponList {
        items: coupons
            .iter()
            .map(|c| UserCouponResponse::at(c, now))
            .collect(),
    }))
}

/// One coupon campaign with its exact remaining quantity.
#[utoipa::path(
    get, path = "/api/v1/coupons/{couponId}", tag = "coupons",
    operation_id = "getCoupon",
    params(("couponId" = i64, Path, minimum = 1)),
    responses(
        (status = 200, body = CouponResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "COUPON_NOT_FOUND", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get(
    use_cases: web::Data<UseCases>,
    id: web::Path<String>,
) -> Result<web::Json<CouponResponse>, ApiError> {
    let id = path_id(&id, "couponId", CouponId::parse)?;
    Ok(web::Json(use_cases.coupons.get(id).await?.into()))
}

/// Creates a coupon campaign (admin). `endsAt` must be after `startsAt`, else 400.
#[utoipa::path(
    post, path = "/api/v1/admin/coupons", tag = "admin",
    operation_id = "adminCreateCoupon",
    request_body = CreateCouponRequest,
    security(("admin" = [])),
    responses(
        (status = 201, body = CouponResponse, headers(("Location" = String))),
        (status = 400, description = "VALIDATION_FAILED", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "UNAUTHORIZED", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "ADMIN_DISABLED", body = Problem, content_type = "application/problem+json"),
        BodyRefusals,
    )
)]
pub async fn create(
    use_cases: web::Data<UseCases>,
    body: JsonBody<CreateCouponRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = body.0;
    let coupon = NewCoupon::new(
        CouponName::new(&req.name)?,
        Discount::new(&req.discount_type, req.discount_value)?,
        CouponQuantity::new(req.total_quantity)?,
        req.starts_at.map(|t| t.with_timezone(&Utc)),
        req.ends_at.with_timezone(&Utc),
        use_cases.coupons.now(),
    )?;
    let coupon = use_cases.coupons.create(coupon).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/coupons/{}", coupon.id)))
        .json(CouponResponse::from(coupon)))
}
