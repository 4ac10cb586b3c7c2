//! `/api/v1/coupons` and the admin coupon route.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::coupons::{
    CreateCouponCommand, CreateCouponError, GetCouponError, HeldCoupon, IssueCouponCommand,
    IssueCouponError, ListUserCouponsError,
};
use chrono::{DateTime, FixedOffset, Utc};
use domain::coupon::{Coupon, CouponName, CouponQuantity, Discount, UserCoupon, UserCouponStatus};
use domain::{CouponId, UserId, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acting::{Acting, acting_user};
use crate::auth::Caller;
use crate::dto::{BodyRefusals, IdempotencyKeyHeader, UserQuery, path_id};
use crate::extract::JsonBody;
use crate::idempotency::{NamesUser, Rendered, idempotent};
use crate::problem::ApiError;
use crate::refusals::{AdminOnly, Invalid, Keyed, Refused};

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
    fn new(c: &UserCoupon, status: UserCouponStatus) -> Self {
        use domain::coupon::UserCouponStatus as S;
        Self {
            id: c.id.get(),
            user_id: c.user_id.get(),
            coupon_id: c.coupon_id.get(),
            name: c.name.as_str().to_owned(),
            discount_type: discount_type(c.discount),
            discount_value: c.discount.value(),
            status: match status {
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

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssueRequest {
    /// With end-user authentication on it may be left out: the user is the bearer
    /// token's, and a `userId` given must be that user.
    #[schema(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
    #[schema(minimum = 1)]
    pub coupon_id: i64,
}

impl NamesUser for IssueRequest {
    fn named_user(&mut self) -> &mut Option<i64> {
        &mut self.user_id
    }
}

impl IssueRequest {
    fn command(&self, user_id: UserId) -> Result<IssueCouponCommand, ApiError> {
        Ok(IssueCouponCommand {
            user_id,
            coupon_id: CouponId::new(self.coupon_id)?,
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

impl TryFrom<CreateCouponRequest> for CreateCouponCommand {
    type Error = ApiError;

    fn try_from(req: CreateCouponRequest) -> Result<Self, ApiError> {
        Ok(Self {
            name: CouponName::new(&req.name)?,
            discount: Discount::new(&req.discount_type, req.discount_value)?,
            total_quantity: CouponQuantity::new(req.total_quantity)?,
            starts_at: req.starts_at.map(|t| t.with_timezone(&Utc)),
            ends_at: req.ends_at.with_timezone(&Utc),
        })
    }
}

/// `Retry-After` of an issue refused because too many are waiting: the queue of one
/// instance drains in well under a second.
const RETRY_AFTER_SECS: u32 = 1;

crate::refusals!(IssueCouponError {
    UserNotFound, CouponNotFound, NotIssuable, SoldOut, AlreadyIssued, Overloaded;
    unlisted Unknown
});

impl From<IssueCouponError> for ApiError {
    fn from(err: IssueCouponError) -> Self {
        match err {
            IssueCouponError::UserNotFound => user_not_found(),
            IssueCouponError::CouponNotFound => coupon_not_found(),
            IssueCouponError::NotIssuable => Self::conflict(
                "COUPON_NOT_ISSUABLE",
                "the coupon can only be issued between its startsAt and endsAt",
            ),
            IssueCouponError::SoldOut => {
                Self::conflict("COUPON_SOLD_OUT", "no copies of this coupon remain")
            }
            IssueCouponError::AlreadyIssued => Self::conflict(
                "COUPON_ALREADY_ISSUED",
                "the user already holds this coupon",
            ),
            IssueCouponError::Overloaded => Self::overloaded(
                "too many coupon issues are waiting in this instance; retry after Retry-After seconds",
                RETRY_AFTER_SECS,
            ),
            IssueCouponError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(ListUserCouponsError {
    UserNotFound;
    unlisted Unknown
});

impl From<ListUserCouponsError> for ApiError {
    fn from(err: ListUserCouponsError) -> Self {
        match err {
            ListUserCouponsError::UserNotFound => user_not_found(),
            ListUserCouponsError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(GetCouponError {
    CouponNotFound;
    unlisted Unknown
});

impl From<GetCouponError> for ApiError {
    fn from(err: GetCouponError) -> Self {
        match err {
            GetCouponError::CouponNotFound => coupon_not_found(),
            GetCouponError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(CreateCouponError {
    InvalidWindow(ValidationError::new("endsAt", "must be after startsAt (to the microsecond)"));
    unlisted Unknown
});

impl From<CreateCouponError> for ApiError {
    fn from(err: CreateCouponError) -> Self {
        match err {
            CreateCouponError::InvalidWindow(e) => e.into(),
            CreateCouponError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn user_not_found() -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", "no user with this id")
}

fn coupon_not_found() -> ApiError {
    ApiError::not_found("COUPON_NOT_FOUND", "no coupon with this id")
}

fn render_issued(issued: &UserCoupon) -> Rendered {
    // Freshly issued: its status is AVAILABLE, judged at issue time.
    Rendered::json(
        StatusCode::CREATED,
        &UserCouponResponse::new(issued, issued.status_at(issued.issued_at)),
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
        Refused<(Invalid, Acting, Keyed, IssueCouponError)>,
        BodyRefusals,
    )
)]
pub async fn issue(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    req: HttpRequest,
    body: JsonBody<IssueRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = acting_user(&use_cases, &caller, body.user_id).await?;
    let cmd = body.command(user_id)?;
    idempotent(
        &use_cases,
        &req,
        cmd.user_id,
        &*body,
        render_issued,
        |completion| use_cases.issue_coupon.execute(cmd, completion),
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
        Refused<(Invalid, Acting, ListUserCouponsError)>,
    )
)]
pub async fn of_user(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    query: web::Query<UserQuery>,
) -> Result<web::Json<UserCouponList>, ApiError> {
    let user_id = acting_user(&use_cases, &caller, query.user_id).await?;
    let held = use_cases.list_user_coupons.execute(user_id).await?;
    Ok(web::Json(UserCouponList {
        items: held
            .iter()
            .map(|HeldCoupon { coupon, status }| UserCouponResponse::new(coupon, *status))
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
        Refused<(Invalid, GetCouponError)>,
    )
)]
pub async fn get(
    use_cases: web::Data<UseCases>,
    id: web::Path<String>,
) -> Result<web::Json<CouponResponse>, ApiError> {
    let id = path_id(&id, "couponId", CouponId::parse)?;
    Ok(web::Json(use_cases.get_coupon.execute(id).await?.into()))
}

/// Creates a coupon campaign (admin). `endsAt` must be after `startsAt`, else 400.
#[utoipa::path(
    post, path = "/api/v1/admin/coupons", tag = "admin",
    operation_id = "adminCreateCoupon",
    request_body = CreateCouponRequest,
    security(("admin" = [])),
    responses(
        (status = 201, body = CouponResponse, headers(("Location" = String))),
        Refused<(Invalid, AdminOnly, CreateCouponError)>,
        BodyRefusals,
    )
)]
pub async fn create(
    use_cases: web::Data<UseCases>,
    body: JsonBody<CreateCouponRequest>,
) -> Result<HttpResponse, ApiError> {
    let cmd = CreateCouponCommand::try_from(body.0)?;
    let coupon = use_cases.create_coupon.execute(cmd).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/coupons/{}", coupon.id)))
        .json(CouponResponse::from(coupon)))
}
