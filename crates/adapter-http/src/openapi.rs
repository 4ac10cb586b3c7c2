//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::OpenApi;

use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Shop server",
        version = "1.0.0",
        description = "Order-and-payment backend: points, catalogue, first-come-first-served coupons, orders, payment, best sellers.\n\nErrors are RFC 9457 `application/problem+json` with a stable `code`."
    ),
    paths(
        routes::users::create_user,
        routes::users::get_user,
        routes::points::charge,
        routes::points::balance,
        routes::points::history,
        routes::ops::live,
        routes::ops::ready,
        routes::ops::metrics,
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    tags(
        (name = "users"), (name = "points"), (name = "operations"),
    )
)]
pub struct ApiDoc;
