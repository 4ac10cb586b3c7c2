//! RFC 9457 problem details, the body of every error response.
//!
//! This module is the one place that picks HTTP statuses and problem codes. A 5xx
//! logs its cause chain and tells the client nothing about it.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use domain::ValidationError;
use domain::error::{has_cause, is_unavailable};
use domain::idempotency::LeaseLost;
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, in the request's terms (`amount`, `items[0].quantity`, `Idempotency-Key`).
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem. `code` is the stable, machine-readable part.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(example = "urn:shop:problem:COUPON_SOLD_OUT")]
    pub kind: String,
    #[schema(example = "Coupon sold out")]
    pub title: String,
    #[schema(example = 409)]
    pub status: u16,
    #[schema(example = "COUPON_SOLD_OUT")]
    pub code: String,
    pub detail: String,
    /// Present on 400 `VALIDATION_FAILED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// An error on its way to becoming a problem+json response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: String,
    errors: Option<Vec<FieldError>>,
    allow: Option<&'static str>,
    /// Seconds for the `Retry-After` header.
    retry_after: Option<u32>,
    /// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 §3).
    challenge: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
            allow: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// The same refusal with a `WWW-Authenticate: challenge` header.
    #[must_use]
    pub fn with_challenge(self, challenge: String) -> Self {
        Self {
            challenge: Some(challenge),
            ..self
        }
    }

    /// 400 `VALIDATION_FAILED` for one field.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            errors: Some(vec![FieldError {
                field: field.clone(),
                message: message.clone(),
            }]),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "VALIDATION_FAILED",
                format!("{field}: {message}"),
            )
        }
    }

    /// 400 `VALIDATION_FAILED` for a request that could not be read at all.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_FAILED", detail)
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("this resource supports {allow}"),
            )
        }
    }

    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After: retry_after_secs`: the server is
    /// shedding load and did nothing; the same request may succeed after that wait.
    pub fn overloaded(detail: impl Into<String>, retry_after_secs: u32) -> Self {
        Self {
            retry_after: Some(retry_after_secs),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                detail,
            )
        }
    }

    /// A failure the client cannot fix: 503 when the database is unreachable (retry
    /// later), 409 when an idempotency lease was lost, else an opaque 500. The cause
    /// chain is logged, never sent.
    pub fn unknown(cause: &anyhow::Error) -> Self {
        if has_cause::<LeaseLost>(cause) {
            return Self::conflict(
                "IDEMPOTENCY_KEY_IN_USE",
                "another request with this Idempotency-Key took over; retry to get its result",
            );
        }
        if is_unavailable(cause) {
            tracing::warn!(error = format!("{cause:#}"), "database unavailable");
            return Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "the service is temporarily unavailable; retry shortly",
            );
        }
        tracing::error!(error = format!("{cause:#}"), "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "an unexpected error occurred",
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Seconds for the `Retry-After` header, when the refusal asks the client to wait.
    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:shop:problem:{}", self.code),
            title: title(self.status, self.code),
            status: self.status.as_u16(),
            code: self.code.to_owned(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }

    /// The serialized body, as sent and as stored for idempotent replays.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.problem()).unwrap_or_default()
    }
}

impl From<ValidationError> for ApiError {
    fn from(err: ValidationError) -> Self {
        Self::validation(err.field, err.message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        if let Some(allow) = self.allow {
            response.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        if let Some(value) = self
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            response.insert_header((header::WWW_AUTHENTICATE, value));
        }
        response.body(self.body())
    }
}

/// A short human title: the code in words.
fn title(status: StatusCode, code: &str) -> String {
    let mut words = code.replace('_', " ").to_lowercase();
    if let Some(first) = words.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    if words.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_owned()
    } else {
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_carry_their_code_status_and_a_title() {
        let p = ApiError::conflict("COUPON_SOLD_OUT", "gone").problem();
        assert_eq!(
            (p.status, p.code.as_str(), p.title.as_str()),
            (409, "COUPON_SOLD_OUT", "Coupon sold out")
        );
        assert!(p.errors.is_none());
    }

    #[test]
    fn validation_problems_list_the_field() {
        let p = ApiError::validation("amount", "must be positive").problem();
        let errors = p.errors.unwrap();
        assert_eq!((errors[0].field.as_str(), p.status), ("amount", 400));
    }

    #[test]
    fn an_overload_is_503_with_retry_after() {
        let err = ApiError::overloaded("busy", 2);
        let response = err.error_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code(), "SERVICE_UNAVAILABLE");
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("2"))
        );
    }

    #[test]
    fn an_unreachable_database_is_503_and_anything_else_an_opaque_500() {
        let down = anyhow::Error::new(domain::StoreUnavailable).context("pool timed out");
        assert_eq!(
            ApiError::unknown(&down).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let bug = ApiError::unknown(&anyhow::anyhow!("relation \"x\" does not exist"));
        assert_eq!(bug.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!String::from_utf8(bug.body()).unwrap().contains("relation"));
    }
}
