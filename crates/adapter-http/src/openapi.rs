//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::{Modify, OpenApi};

use crate::auth::ADMIN_SCOPE;
use crate::routes;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Shop server",
        version = "1.0.0",
        description = "Order-and-payment backend: points, catalogue, first-come-first-served coupons, orders, payment, best sellers.\n\nErrors are RFC 9457 `application/problem+json` with a stable `code`.\n\nRequest bodies are read strictly, with rules JSON Schema does not state: an object may not repeat a key, at any depth; no text field may hold a control character (U+0000–U+001F, U+007F–U+009F); an object is never read from an array. Unknown fields are skipped unexamined. Each refusal is 400 `VALIDATION_FAILED`."
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
    modifiers(&AdminSecurity, &Refinements)
)]
pub struct ApiDoc;

/// Declares the bearer schemes: `admin`, the static `ADMIN_TOKEN`, and `bearer`, an
/// identity provider's JWT (when end-user authentication is on). An admin route
/// accepts either; a JWT needs the `shop:admin` scope there.
#[derive(Debug)]
struct AdminSecurity;

impl Modify for AdminSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The static ADMIN_TOKEN"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from the identity provider, when end-user authentication is on \
                         (AUTH_JWT_SECRET or AUTH_JWKS_FILE set); the admin API needs the scope `shop:admin`",
                    ))
                    .build(),
            ),
        );
        for (path, item) in &mut openapi.paths.paths {
            if !path.starts_with("/api/v1/admin/") {
                continue;
            }
            for op in [&mut item.get, &mut item.post, &mut item.patch]
                .into_iter()
                .flatten()
            {
                op.security
                    .get_or_insert_with(Vec::new)
                    .push(SecurityRequirement::new("bearer", [ADMIN_SCOPE]));
            }
        }
    }
}

/// What the annotations cannot say.
#[derive(Debug)]
struct Refinements;

impl Modify for Refinements {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // `POST /api/v1/users` takes no body or a JSON object.
        if let Some(body) = openapi
            .paths
            .paths
            .get_mut("/api/v1/users")
            .and_then(|item| item.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
        {
            body.required = Some(Required::False);
        }
        // A RATE discount is a percentage: 1–100 (JSON Schema's if/then, which utoipa
        // has no attribute for; its extensions are written into the schema object as is).
        if let Some(RefOr::T(Schema::Object(coupon))) = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("CreateCouponRequest"))
        {
            let extensions = coupon.extensions.get_or_insert_with(Default::default);
            extensions.insert(
                "if".into(),
                serde_json::json!({
                    "properties": {"discountType": {"const": "RATE"}},
                    "required": ["discountType"]
                }),
            );
            extensions.insert(
                "then".into(),
                serde_json::json!({"properties": {"discountValue": {"maximum": 100}}}),
            );
        }
    }
}
