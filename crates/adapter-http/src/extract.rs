//! Extractor configuration: every way actix can refuse a request becomes a problem.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, web};

use crate::problem::ApiError;
use crate::strict_json::{self, StrictValue};

/// Request bodies over this size are refused with 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(true)
        .content_type(|mime| mime.type_() == "application" && mime.subtype() == "json")
        .error_handler(|err, _req| json_error(&err).into())
}

fn json_error(err: &JsonPayloadError) -> ApiError {
    match err {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "request bodies must be application/json",
        ),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::malformed(format!("the request body does not fit the schema: {e}"))
        }
        JsonPayloadError::Deserialize(e) => {
            ApiError::malformed(format!("the request body is not valid JSON: {e}"))
        }
        other => ApiError::malformed(format!("the request body could not be read: {other}")),
    }
}

pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| query_error(&err).into())
}

fn query_error(err: &QueryPayloadError) -> ApiError {
    ApiError::malformed(format!("invalid query string: {err}"))
}

pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, req| path_error(&err, req).into())
}

fn path_error(err: &PathError, _req: &HttpRequest) -> ApiError {
    ApiError::malformed(format!("invalid path parameter: {err}"))
}

/// A JSON request body read strictly into `T` (see [`crate::strict_json`]): an object
/// where the schema has one at every depth, no duplicate keys, no control characters in
/// text. Size and content-type checks come from [`json_config`]; every refusal is a 400
/// problem naming the path of the offending part, before any use case runs.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T> std::ops::Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: serde::de::DeserializeOwned + 'static> actix_web::FromRequest for JsonBody<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let value = web::Json::<StrictValue>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(StrictValue(value)) = value.await?;
            if !value.is_object() {
                return Err(ApiError::malformed("the request body must be a JSON object").into());
            }
            strict_json::from_value(&value).map(JsonBody).map_err(|e| {
                ApiError::malformed(format!("the request body does not fit the schema: {e}")).into()
            })
        })
    }
}
