//! The documented refusals of each route, derived from the errors the route can return.
//!
//! Every action's error enum maps to problems through `From<…Error> for ApiError` (one
//! `match`, so a status or a code is chosen in one place). [`refusals!`](crate::refusals!)
//! lists one sample of each refusal variant, checked for completeness by the compiler,
//! and [`Refused`] turns those samples into the route's OpenAPI responses: the document
//! shows exactly the statuses and codes the mapping produces, and the two cannot drift.
//!
//! ```ignore
//! refusals!(PlaceOrderError {
//!     UserNotFound, ProductNotFound(ProductId::MIN), OutOfStock(ProductId::MIN);
//!     unlisted Unknown
//! });
//! // in the route's #[utoipa::path(responses(...))]:
//! //     Refused<(Invalid, CancelOrderError)>
//! ```

use std::collections::BTreeMap;
use std::marker::PhantomData;

use actix_web::http::StatusCode;
use utoipa::openapi::{ContentBuilder, HeaderBuilder, RefOr, Response, ResponseBuilder, schema};
use utoipa::{IntoResponses, ToSchema};

use crate::admin::AdminToken;
use crate::auth::{ADMIN_SCOPE, AuthError};
use crate::problem::{ApiError, PROBLEM_JSON, Problem};

/// The problems a client can be answered with (refusals; never a 5xx of an unknown
/// failure), one per code.
pub trait Refusals {
    fn refusals() -> Vec<ApiError>;
}

/// Implements [`Refusals`] for an error enum from one sample value per refusal variant
/// (`Variant` or `Variant(sample, …)`). The variants after `unlisted` (an `Unknown` that
/// becomes 500 or 503) are not refusals. A variant in neither list fails to compile, so
/// a new one cannot be left out of the document.
#[macro_export]
macro_rules! refusals {
    ($error:ident {
        $($variant:ident $(($($arg:expr),* $(,)?))?),+ $(,)?
        ; unlisted $($unlisted:ident),* $(,)?
    }) => {
        impl $crate::refusals::Refusals for $error {
            fn refusals() -> Vec<$crate::problem::ApiError> {
                // Exhaustive: a variant added to the error must be listed above.
                let _every_variant_is_listed = |error: &$error| match error {
                    $($error::$variant { .. } => {})+
                    $($error::$unlisted { .. } => {})*
                };
                vec![$($crate::problem::ApiError::from($error::$variant $(($($arg),*))?)),+]
            }
        }
    };
}

/// The OpenAPI responses of the refusals `R`: one per status, listing its codes.
#[derive(Debug)]
pub struct Refused<R>(PhantomData<R>);

impl<R: Refusals> IntoResponses for Refused<R> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut by_status: BTreeMap<u16, Vec<ApiError>> = BTreeMap::new();
        for refusal in R::refusals() {
            by_status
                .entry(refusal.status().as_u16())
                .or_default()
                .push(refusal);
        }
        by_status
            .into_iter()
            .map(|(status, refusals)| (status.to_string(), RefOr::T(response(&refusals))))
            .collect()
    }
}

fn response(refusals: &[ApiError]) -> Response {
    let mut codes: Vec<&str> = refusals.iter().map(ApiError::code).collect();
    codes.dedup();
    let mut description = codes.join(", ");
    if let [only] = refusals {
        description = format!("{}: {}", only.code(), only.detail());
    }
    let mut builder = ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(schema::Ref::from_schema_name(Problem::name())))
            .build(),
    );
    if refusals.iter().any(|r| r.retry_after().is_some()) {
        builder = builder.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(schema::ObjectBuilder::new().schema_type(schema::Type::Integer))
                .description(Some("Seconds to wait before trying again"))
                .build(),
        );
    }
    builder.build()
}

macro_rules! tuples {
    ($($name:ident),+) => {
        impl<$($name: Refusals),+> Refusals for ($($name,)+) {
            fn refusals() -> Vec<ApiError> {
                let mut all = Vec::new();
                $(all.extend($name::refusals());)+
                all
            }
        }
    };
}
tuples!(A);
tuples!(A, B);
tuples!(A, B, C);
tuples!(A, B, C, D);

/// 400 `VALIDATION_FAILED`: a field, a parameter or the body is invalid.
#[derive(Debug)]
pub struct Invalid;

impl Refusals for Invalid {
    fn refusals() -> Vec<ApiError> {
        vec![ApiError::malformed(
            "a field, a parameter or the body is invalid; `errors` names the field",
        )]
    }
}

/// The refusals of a request with an `Idempotency-Key`.
#[derive(Debug)]
pub struct Keyed;

impl Refusals for Keyed {
    fn refusals() -> Vec<ApiError> {
        vec![
            ApiError::conflict(
                "IDEMPOTENCY_KEY_IN_USE",
                "a request with this key is still running; retry to get its result",
            ),
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "the key was used with another body or route",
            ),
        ]
    }
}

/// The refusals of the admin API's bearer check (401 `UNAUTHORIZED`, 403
/// `ADMIN_DISABLED`, and with end-user authentication on 403 `FORBIDDEN` for a token
/// without the admin scope), taken from the check itself.
#[derive(Debug)]
pub struct AdminOnly;

impl Refusals for AdminOnly {
    fn refusals() -> Vec<ApiError> {
        [
            AdminToken::new(Some("configured")).check(None),
            AdminToken::new(None).check(None),
        ]
        .into_iter()
        .filter_map(Result::err)
        .chain([AuthError::InsufficientScope(ADMIN_SCOPE).into()])
        .collect()
    }
}

/// The refusals of a route that takes the [`Caller`](crate::auth::Caller) when
/// end-user authentication is on: 401 `UNAUTHORIZED` for a missing or invalid token.
#[derive(Debug)]
pub struct Authenticated;

impl Refusals for Authenticated {
    fn refusals() -> Vec<ApiError> {
        vec![AuthError::InvalidToken.into()]
    }
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    use super::*;

    #[derive(Debug)]
    enum SampleError {
        Gone,
        Taken(i64),
        Unknown,
    }

    impl From<SampleError> for ApiError {
        fn from(err: SampleError) -> Self {
            match err {
                SampleError::Gone => Self::not_found("GONE", "it is gone"),
                SampleError::Taken(n) => Self::conflict("TAKEN", format!("{n} is taken")),
                SampleError::Unknown => Self::malformed("never documented"),
            }
        }
    }

    refusals!(SampleError {
        Gone, Taken(7);
        unlisted Unknown
    });

    fn statuses<R: IntoResponses>() -> Vec<String> {
        R::responses().into_keys().collect()
    }

    #[test]
    fn refusals_become_one_response_per_status_listing_every_code() {
        assert_eq!(
            statuses::<Refused<(Invalid, Keyed, SampleError)>>(),
            ["400", "404", "409", "422"]
        );
        let responses = Refused::<(Keyed, SampleError)>::responses();
        let inline = |status: &str| match responses.get(status) {
            Some(RefOr::T(response)) => Some(response.clone()),
            _ => None,
        };
        assert_eq!(
            inline("409").map(|r| r.description),
            Some("IDEMPOTENCY_KEY_IN_USE, TAKEN".to_owned())
        );
        let gone = inline("404");
        assert_eq!(
            gone.as_ref().map(|r| r.description.as_str()),
            Some("GONE: it is gone")
        );
        assert!(gone.is_some_and(|r| r.content.contains_key(PROBLEM_JSON)));
        // The unlisted variant is not a refusal, whatever it maps to.
        assert_eq!(
            ApiError::from(SampleError::Unknown).code(),
            "VALIDATION_FAILED"
        );
    }

    #[test]
    fn admin_refusals_come_from_the_bearer_check() {
        let codes: Vec<_> = AdminOnly::refusals().iter().map(ApiError::code).collect();
        assert_eq!(codes, ["UNAUTHORIZED", "ADMIN_DISABLED", "FORBIDDEN"]);
    }

    #[test]
    fn a_route_documents_what_its_error_maps_to() {
        let doc = crate::openapi::ApiDoc::openapi();
        let restock = doc.paths.paths["/api/v1/admin/products/{id}/restock"]
            .post
            .as_ref()
            .map(|op| op.responses.responses.keys().cloned().collect::<Vec<_>>());
        assert_eq!(
            restock.unwrap_or_default(),
            ["200", "400", "401", "403", "404", "409", "413", "415"]
        );
    }
}
