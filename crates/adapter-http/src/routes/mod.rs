//! Route handlers, one module per resource family.

pub mod best;
pub mod coupons;
pub mod jobs;
pub mod ops;
pub mod orders;
pub mod points;
pub mod products;
pub mod users;

use actix_web::{Resource, web};

use crate::problem::ApiError;

/// A resource that answers unsupported methods with 405 and an `Allow` header.
pub(crate) fn resource(path: &str, allow: &'static str) -> Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::method_not_allowed(allow))
    }))
}
