//! The OpenAPI document, generated from the handlers' annotations.
//!
//! [`ApiDoc`] describes the server with end-user authentication off: a user-scoped
//! operation names its user (`userId` required) and may carry a bearer token.
//! [`document`] is what the server serves: that, or with authentication on, the
//! user-scoped operations requiring the bearer token and `userId` optional.

use utoipa::openapi::path::{Operation, Paths};
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
    modifiers(&AdminSecurity, &UserSecurity, &Refinements)
)]
pub struct ApiDoc;

/// The operations that act for one user ([`crate::acting`]): with end-user
/// authentication on, the bearer token's user.
pub const USER_SCOPED: [&str; 11] = [
    "getUser",
    "chargePoints",
    "getBalance",
    "listPointHistory",
    "payOrder",
    "placeOrder",
    "getOrder",
    "listOrders",
    "cancelOrder",
    "issueCoupon",
    "listUserCoupons",
];

/// The operations that take the end user's bearer token when authentication is on.
fn takes_user_token(op: &Operation) -> bool {
    op.operation_id
        .as_deref()
        .is_some_and(|id| id == "createUser" || USER_SCOPED.contains(&id))
}

/// The GET and POST operations of `paths` that take the end user's token.
fn user_token_operations(paths: &mut Paths) -> impl Iterator<Item = &mut Operation> {
    paths
        .paths
        .values_mut()
        .flat_map(|item| {
            [item.get.as_mut(), item.post.as_mut()]
                .into_iter()
                .flatten()
        })
        .filter(|op| takes_user_token(op))
}

/// The document to serve: [`ApiDoc`] with end-user authentication off; with it on,
/// every user-scoped operation (and `createUser`) requires the `bearer` scheme, and the
/// `userId` they name their user by is optional.
pub fn document(authentication: bool) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    if !authentication {
        return doc;
    }
    let mut bodies = Vec::new();
    for op in user_token_operations(&mut doc.paths) {
        op.security = Some(vec![SecurityRequirement::new("bearer", [""; 0])]);
        for param in op.parameters.iter_mut().flatten() {
            if param.name == crate::acting::FIELD {
                param.required = Required::False;
            }
        }
        let schema = op
            .request_body
            .as_ref()
            .and_then(|body| body.content.get("application/json"))
            .and_then(|content| content.schema.as_ref());
        if let Some(RefOr::Ref(reference)) = schema
            && let Some(name) = reference.ref_location.rsplit('/').next()
        {
            bodies.push(name.to_owned());
        }
    }
    for name in bodies {
        if let Some(RefOr::T(Schema::Object(body))) = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut(&name))
        {
            body.required.retain(|field| field != crate::acting::FIELD);
        }
    }
    doc
}

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

/// Declares on every operation that takes the end user's token ([`USER_SCOPED`] and
/// `createUser`) that it may carry one: with authentication off it is not looked at.
#[derive(Debug)]
struct UserSecurity;

impl Modify for UserSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in user_token_operations(&mut openapi.paths) {
            op.security = Some(vec![
                SecurityRequirement::default(),
                SecurityRequirement::new("bearer", [""; 0]),
            ]);
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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// Every operation of `doc` as (operationId, operation JSON).
    fn operations(doc: &Value) -> Vec<(String, Value)> {
        let mut ops = Vec::new();
        for item in doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
        {
            for op in item.as_object().into_iter().flat_map(|i| i.values()) {
                if let Some(id) = op["operationId"].as_str() {
                    ops.push((id.to_owned(), op.clone()));
                }
            }
        }
        ops
    }

    /// Whether `op` names a user by `userId`, and whether it must: as a query
    /// parameter or as a property of its JSON body.
    fn user_id(doc: &Value, op: &Value) -> Option<bool> {
        let params = op["parameters"].as_array().into_iter().flatten();
        if let Some(param) = params.into_iter().find(|p| p["name"] == "userId") {
            return Some(param["required"] == true);
        }
        let reference =
            op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()?;
        let name = reference.rsplit('/').next()?;
        let schema = &doc["components"]["schemas"][name];
        schema["properties"].get("userId")?;
        Some(
            schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|f| f == "userId")),
        )
    }

    fn json(authentication: bool) -> Value {
        serde_json::to_value(document(authentication)).unwrap_or_default()
    }

    #[test]
    fn user_id_is_a_positive_integer_never_null() {
        let doc = json(false);
        let body = &doc["components"]["schemas"]["ChargeRequest"]["properties"]["userId"];
        let query = operations(&doc)
            .into_iter()
            .find(|(id, _)| id == "getBalance")
            .map(|(_, op)| op["parameters"][0]["schema"].clone())
            .unwrap_or_default();
        for schema in [body, &query] {
            assert_eq!(schema["type"], "integer", "{schema}");
            assert_eq!(schema["minimum"], 1, "{schema}");
        }
    }

    #[test]
    fn the_user_scoped_operations_are_exactly_those_that_name_a_user() {
        let doc = json(false);
        let mut named: Vec<String> = operations(&doc)
            .into_iter()
            .filter(|(id, op)| id == "getUser" || user_id(&doc, op).is_some())
            .map(|(id, _)| id)
            .collect();
        named.sort();
        let mut scoped = USER_SCOPED.map(String::from).to_vec();
        scoped.sort();
        assert_eq!(named, scoped);
    }

    #[test]
    fn with_authentication_off_a_user_is_named_and_a_token_is_optional() {
        let doc = json(false);
        for (id, op) in operations(&doc) {
            if !USER_SCOPED.contains(&id.as_str()) && id != "createUser" {
                continue;
            }
            assert_eq!(
                op["security"],
                serde_json::json!([{}, {"bearer": []}]),
                "{id}"
            );
            if id == "createUser" {
                continue;
            }
            if id != "getUser" {
                assert_eq!(user_id(&doc, &op), Some(true), "{id}");
            }
            for status in ["401", "403"] {
                assert!(op["responses"][status].is_object(), "{id} {status}");
            }
        }
    }

    #[test]
    fn with_authentication_on_the_token_is_required_and_the_user_optional() {
        let doc = json(true);
        let mut seen = 0;
        for (id, op) in operations(&doc) {
            if USER_SCOPED.contains(&id.as_str()) || id == "createUser" {
                seen += 1;
                assert_eq!(op["security"], serde_json::json!([{"bearer": []}]), "{id}");
                if id != "getUser" && id != "createUser" {
                    assert_eq!(user_id(&doc, &op), Some(false), "{id}");
                }
            } else if id.starts_with("list") || id.starts_with("get") {
                // Public reads (the catalogue, a campaign, best sellers) stay open.
                assert!(op.get("security").is_none(), "{id}");
            }
        }
        assert_eq!(seen, USER_SCOPED.len() + 1);
        // The admin API is unchanged.
        let off = json(false);
        assert_eq!(
            doc["paths"]["/api/v1/admin/products"],
            off["paths"]["/api/v1/admin/products"]
        );
    }
}
