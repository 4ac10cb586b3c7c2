//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

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
        routes::orders::pay,
        routes::orders::place,
        routes::orders::list,
        routes::orders::get,
        routes::orders::cancel,
        routes::products::list,
        routes::products::get,
        routes::coupons::issue,
        routes::coupons::of_user,
        routes::coupons::get,
        routes::products::create,
        routes::products::patch,
        routes::products::restock,
        routes::coupons::create,
        routes::jobs::expire_orders,
        routes::jobs::outbox,
        routes::best::best,
        routes::best::refresh,
        routes::ops::live,
        routes::ops::ready,
        routes::ops::metrics,
    ),
    components(schemas(crate::problem::Problem, crate::problem::FieldError)),
    tags(
        (name = "users"), (name = "points"), (name = "products"), (name = "coupons"), (name = "orders"),
        (name = "admin", description = "Requires `Authorization: Bearer <ADMIN_TOKEN>`"),
        (name = "operations"),
    ),
    modifiers(&AdminSecurity)
)]
pub struct ApiDoc;

/// Declares the admin bearer-token scheme the admin routes refer to.
#[derive(Debug)]
struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
