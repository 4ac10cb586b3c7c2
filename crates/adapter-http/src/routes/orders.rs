//! `/api/v1/orders` and payment (`/api/v1/points/use`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::orders::{
    CancelOrderError, GetOrderError, ListOrdersError, PayOrderCommand, PayOrderError,
    PlaceOrderCommand, PlaceOrderError,
};
use chrono::{DateTime, Utc};
use domain::order::{Order, OrderItems, OrderQuantity, OrderStatus, Payment};
use domain::{OrderId, ProductId, UserCouponId, UserId, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::acting::{Acting, acting_user};
use crate::auth::Caller;
use crate::dto::{BodyRefusals, IdempotencyKeyHeader, PageDto, UserPageQuery, UserQuery, path_id};
use crate::extract::JsonBody;
use crate::idempotency::{NamesUser, Rendered, idempotent};
use crate::problem::ApiError;
use crate::refusals::{Invalid, Keyed, Refused};

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItemRequest {
    #[schema(minimum = 1)]
    pub product_id: i64,
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrderRequest {
    /// With end-user authentication on it may be left out: the user is the bearer
    /// token's, and a `userId` given must be that user.
    #[schema(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
    /// 1–50 lines; lines of one product are merged, and a merged quantity above 1,000
    /// is 400 on that line's `quantity`.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<OrderItemRequest>,
    /// One of the user's coupons (`GET /api/v1/coupons`), applied to the order.
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
}

impl NamesUser for PlaceOrderRequest {
    fn named_user(&mut self) -> &mut Option<i64> {
        &mut self.user_id
    }
}

fn at_index(index: usize, err: ValidationError) -> ApiError {
    ApiError::validation(format!("items[{index}].{}", err.field), err.message)
}

impl PlaceOrderRequest {
    fn command(&self, user_id: UserId) -> Result<PlaceOrderCommand, ApiError> {
        let lines = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok((
                    ProductId::new(item.product_id).map_err(|e| at_index(i, e))?,
                    OrderQuantity::new(item.quantity).map_err(|e| at_index(i, e))?,
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        Ok(PlaceOrderCommand {
            user_id,
            items: OrderItems::new(lines)?,
            user_coupon_id: self.user_coupon_id.map(UserCouponId::new).transpose()?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLineResponse {
    pub product_id: i64,
    pub product_name: String,
    pub unit_price: i64,
    pub quantity: i64,
    pub amount: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatusDto {
    NotPaid,
    Paid,
    Expired,
    Cancelled,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderResponse {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatusDto,
    pub items: Vec<OrderLineResponse>,
    pub total_amount: i64,
    pub discount_amount: i64,
    pub pay_amount: i64,
    pub user_coupon_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

impl From<&Order> for OrderResponse {
    fn from(o: &Order) -> Self {
        Self {
            id: o.id.get(),
            user_id: o.user_id.get(),
            status: match o.status {
                OrderStatus::NotPaid => OrderStatusDto::NotPaid,
                OrderStatus::Paid => OrderStatusDto::Paid,
                OrderStatus::Expired => OrderStatusDto::Expired,
                OrderStatus::Cancelled => OrderStatusDto::Cancelled,
            },
            items: o
                .lines
                .iter()
                .map(|l| OrderLineResponse {
                    product_id: l.product_id.get(),
                    product_name: l.product_name.as_str().to_owned(),
                    unit_price: l.unit_price.get(),
                    quantity: l.quantity.get(),
                    amount: l.amount.get(),
                })
                .collect(),
            total_amount: o.total_amount.get(),
            discount_amount: o.discount_amount.get(),
            pay_amount: o.pay_amount.get(),
            user_coupon_id: o.user_coupon_id.map(UserCouponId::get),
            created_at: o.created_at,
            expires_at: o.expires_at,
            paid_at: o.paid_at,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayRequest {
    /// With end-user authentication on it may be left out: the user is the bearer
    /// token's, and a `userId` given must be that user.
    #[schema(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
    #[schema(minimum = 1)]
    pub order_id: i64,
}

impl NamesUser for PayRequest {
    fn named_user(&mut self) -> &mut Option<i64> {
        &mut self.user_id
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub order_id: i64,
    pub user_id: i64,
    #[schema(example = "PAID")]
    pub status: OrderStatusDto,
    pub paid_amount: i64,
    /// The balance after paying.
    pub balance: i64,
    pub paid_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    /// With end-user authentication on it may be left out: the user is the bearer
    /// token's, and a `userId` given must be that user.
    #[schema(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
}

impl PayRequest {
    fn command(&self, user_id: UserId) -> Result<PayOrderCommand, ApiError> {
        Ok(PayOrderCommand {
            user_id,
            order_id: OrderId::new(self.order_id)?,
        })
    }
}

fn user_not_found() -> ApiError {
    ApiError::not_found("USER_NOT_FOUND", "no user with this id")
}

fn order_not_found() -> ApiError {
    ApiError::not_found("ORDER_NOT_FOUND", "the user has no such order")
}

crate::refusals!(PlaceOrderError {
    UserNotFound, UserCouponNotFound, ProductNotFound(ProductId::from_trusted(1)), CouponNotUsable,
    OutOfStock(ProductId::from_trusted(1));
    unlisted Unknown
});

impl From<PlaceOrderError> for ApiError {
    fn from(err: PlaceOrderError) -> Self {
        match err {
            PlaceOrderError::UserNotFound => user_not_found(),
            PlaceOrderError::UserCouponNotFound => {
                Self::not_found("USER_COUPON_NOT_FOUND", "the user holds no such coupon")
            }
            PlaceOrderError::ProductNotFound(p) => {
                Self::not_found("PRODUCT_NOT_FOUND", format!("no product with id {p}"))
            }
            PlaceOrderError::CouponNotUsable => {
                Self::conflict("COUPON_NOT_USABLE", "the coupon is used or expired")
            }
            PlaceOrderError::OutOfStock(p) => Self::conflict(
                "OUT_OF_STOCK",
                format!("product {p} does not have enough stock"),
            ),
            PlaceOrderError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(PayOrderError {
    UserNotFound, OrderNotFound, OrderExpired, OrderNotPayable, InsufficientBalance;
    unlisted Unknown
});

impl From<PayOrderError> for ApiError {
    fn from(err: PayOrderError) -> Self {
        match err {
            PayOrderError::UserNotFound => user_not_found(),
            PayOrderError::OrderNotFound => order_not_found(),
            PayOrderError::OrderExpired => {
                Self::conflict("ORDER_EXPIRED", "the order's payment time has passed")
            }
            PayOrderError::OrderNotPayable => Self::conflict(
                "ORDER_NOT_PAYABLE",
                "the order is already paid or cancelled",
            ),
            PayOrderError::InsufficientBalance => Self::conflict(
                "INSUFFICIENT_BALANCE",
                "the balance is lower than the amount to pay",
            ),
            PayOrderError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(CancelOrderError {
    UserNotFound, OrderNotFound, NotCancellable;
    unlisted Unknown
});

impl From<CancelOrderError> for ApiError {
    fn from(err: CancelOrderError) -> Self {
        match err {
            CancelOrderError::UserNotFound => user_not_found(),
            CancelOrderError::OrderNotFound => order_not_found(),
            CancelOrderError::NotCancellable => Self::conflict(
                "ORDER_NOT_CANCELLABLE",
                "only an unpaid order can be cancelled",
            ),
            CancelOrderError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(GetOrderError {
    UserNotFound, OrderNotFound;
    unlisted Unknown
});

impl From<GetOrderError> for ApiError {
    fn from(err: GetOrderError) -> Self {
        match err {
            GetOrderError::UserNotFound => user_not_found(),
            GetOrderError::OrderNotFound => order_not_found(),
            GetOrderError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(ListOrdersError {
    UserNotFound;
    unlisted Unknown
});

impl From<ListOrdersError> for ApiError {
    fn from(err: ListOrdersError) -> Self {
        match err {
            ListOrdersError::UserNotFound => user_not_found(),
            ListOrdersError::Unknown(e) => Self::unknown(&e),
        }
    }
}

fn render_placed(order: &Order) -> Rendered {
    Rendered::json(StatusCode::CREATED, &OrderResponse::from(order))
        .at(format!("/api/v1/orders/{}", order.id))
}

fn render_paid(p: &Payment) -> Rendered {
    Rendered::json(
        StatusCode::OK,
        &PaymentResponse {
            order_id: p.order_id.get(),
            user_id: p.user_id.get(),
            status: OrderStatusDto::Paid,
            paid_amount: p.paid_amount.get(),
            balance: p.balance.get(),
            paid_at: p.paid_at,
        },
    )
}

fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    path_id(raw, "id", OrderId::parse)
}

/// Places an order: stock deducted, coupon used, NOT_PAID until paid or expired.
#[utoipa::path(
    post, path = "/api/v1/orders", tag = "orders",
    operation_id = "placeOrder",
    request_body = PlaceOrderRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 201, body = OrderResponse, headers(("Location" = String))),
        Refused<(Invalid, Acting, Keyed, PlaceOrderError)>,
        BodyRefusals,
    )
)]
pub async fn place(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    req: HttpRequest,
    body: JsonBody<PlaceOrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = acting_user(&use_cases, &caller, body.user_id).await?;
    let cmd = body.command(user_id)?;
    idempotent(
        &use_cases,
        &req,
        user_id,
        &*body,
        render_placed,
        |completion| use_cases.place_order.execute(cmd, completion),
    )
    .await
}

/// One of the user's orders (404 for anyone else's).
#[utoipa::path(
    get, path = "/api/v1/orders/{id}", tag = "orders",
    operation_id = "getOrder",
    params(("id" = i64, Path, minimum = 1), UserQuery),
    responses(
        (status = 200, body = OrderResponse),
        Refused<(Invalid, Acting, GetOrderError)>,
    )
)]
pub async fn get(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<UserQuery>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let id = order_id(&id)?;
    let user_id = acting_user(&use_cases, &caller, query.user_id).await?;
    let order = use_cases.get_order.execute(user_id, id).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

/// The user's orders, newest first.
#[utoipa::path(
    get, path = "/api/v1/orders", tag = "orders",
    operation_id = "listOrders",
    params(UserPageQuery),
    responses(
        (status = 200, body = PageDto<OrderResponse>),
        Refused<(Invalid, Acting, ListOrdersError)>,
    )
)]
pub async fn list(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    query: web::Query<UserPageQuery>,
) -> Result<web::Json<PageDto<OrderResponse>>, ApiError> {
    let user_id = acting_user(&use_cases, &caller, query.user_id).await?;
    let page = query.page()?;
    let page = use_cases.list_orders.execute(user_id, page).await?;
    Ok(web::Json(PageDto::from_page(page, |o| {
        OrderResponse::from(&o)
    })))
}

/// Cancels an unpaid order: stock and coupon restored.
#[utoipa::path(
    post, path = "/api/v1/orders/{id}/cancel", tag = "orders",
    operation_id = "cancelOrder",
    params(("id" = i64, Path, minimum = 1)),
    request_body = CancelRequest,
    responses(
        (status = 200, body = OrderResponse),
        Refused<(Invalid, Acting, CancelOrderError)>,
        BodyRefusals,
    )
)]
pub async fn cancel(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    id: web::Path<String>,
    body: JsonBody<CancelRequest>,
) -> Result<web::Json<OrderResponse>, ApiError> {
    let id = order_id(&id)?;
    let user_id = acting_user(&use_cases, &caller, body.user_id).await?;
    let order = use_cases.cancel_order.execute(user_id, id).await?;
    Ok(web::Json(OrderResponse::from(&order)))
}

/// Pays an order from the user's points.
#[utoipa::path(
    post, path = "/api/v1/points/use", tag = "points",
    operation_id = "payOrder",
    request_body = PayRequest,
    params(IdempotencyKeyHeader),
    responses(
        (status = 200, body = PaymentResponse),
        Refused<(Invalid, Acting, Keyed, PayOrderError)>,
        BodyRefusals,
    )
)]
pub async fn pay(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    req: HttpRequest,
    body: JsonBody<PayRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = acting_user(&use_cases, &caller, body.user_id).await?;
    let cmd = body.command(user_id)?;
    idempotent(
        &use_cases,
        &req,
        cmd.user_id,
        &*body,
        render_paid,
        |completion| use_cases.pay_order.execute(cmd, completion),
    )
    .await
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;
    use utoipa::openapi::RefOr;

    /// Each documented status of `method path`, with its description.
    fn documented(method: &str, path: &str) -> Vec<(String, String)> {
        let doc = crate::openapi::ApiDoc::openapi();
        let item = &doc.paths.paths[path];
        let op = match method {
            "get" => item.get.as_ref(),
            _ => item.post.as_ref(),
        }
        .unwrap();
        op.responses
            .responses
            .iter()
            .map(|(status, response)| {
                let description = match response {
                    RefOr::T(response) => response.description.clone(),
                    RefOr::Ref(_) => String::new(),
                };
                (status.clone(), description)
            })
            .collect()
    }

    fn statuses(documented: &[(String, String)]) -> Vec<&str> {
        documented.iter().map(|(s, _)| s.as_str()).collect()
    }

    fn description<'a>(documented: &'a [(String, String)], status: &str) -> &'a str {
        documented
            .iter()
            .find(|(s, _)| s == status)
            .map_or("", |(_, d)| d.as_str())
    }

    #[test]
    fn each_order_route_documents_the_refusals_its_own_error_maps_to() {
        let pay = documented("post", "/api/v1/points/use");
        assert_eq!(
            statuses(&pay),
            [
                "200", "400", "401", "403", "404", "409", "413", "415", "422"
            ]
        );
        assert_eq!(
            description(&pay, "403"),
            "FORBIDDEN: a token acts only for its own user"
        );
        assert_eq!(
            description(&pay, "409"),
            "IDEMPOTENCY_KEY_IN_USE, ORDER_EXPIRED, ORDER_NOT_PAYABLE, INSUFFICIENT_BALANCE"
        );
        let place = documented("post", "/api/v1/orders");
        assert_eq!(
            description(&place, "404"),
            "USER_NOT_FOUND, USER_COUPON_NOT_FOUND, PRODUCT_NOT_FOUND"
        );
        assert_eq!(
            description(&place, "409"),
            "IDEMPOTENCY_KEY_IN_USE, COUPON_NOT_USABLE, OUT_OF_STOCK"
        );
        // A read refuses nothing a payment or a cancel would.
        let get = documented("get", "/api/v1/orders/{id}");
        assert_eq!(statuses(&get), ["200", "400", "401", "403", "404"]);
        assert_eq!(description(&get, "404"), "USER_NOT_FOUND, ORDER_NOT_FOUND");
        let list = documented("get", "/api/v1/orders");
        assert_eq!(statuses(&list), ["200", "400", "401", "403", "404"]);
        let cancel = documented("post", "/api/v1/orders/{id}/cancel");
        assert_eq!(
            statuses(&cancel),
            ["200", "400", "401", "403", "404", "409", "413", "415"]
        );
        assert!(description(&cancel, "409").starts_with("ORDER_NOT_CANCELLABLE"));
    }
}
