//! Request and response bodies (camelCase JSON), and their conversion into domain
//! commands. Requests are parsed with `TryFrom` into validated domain types.

use domain::{PageRequest, ValidationError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, IntoResponses, ToSchema};

use crate::problem::{ApiError, Problem};

/// Reads an id from the path as text, so that `abc`, `1.5` or a number past `i64` is the
/// same 400 on the field as `0` or `-3` (`must be a positive integer`), rather than a
/// parser's message about the path. As in bodies, a whole number written with a fraction
/// or an exponent (`7.0`, `1e2`) is that integer, up to 2⁵³: JSON Schema, and so the
/// document's `integer`, counts it one.
///
/// # Errors
/// 400 `VALIDATION_FAILED` on `field` unless `raw` is a positive integer.
pub fn path_id<T>(
    raw: &str,
    field: &'static str,
    parse: fn(i64, &'static str) -> Result<T, ValidationError>,
) -> Result<T, ApiError> {
    let number = whole_number(raw)
        .ok_or_else(|| ApiError::validation(field, "must be a positive integer"))?;
    Ok(parse(number, field)?)
}

/// `raw` as an integer: digits, or a whole number within ±2⁵³ written as a float.
fn whole_number(raw: &str) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2⁵³
    if let Ok(number) = raw.parse::<i64>() {
        return Some(number);
    }
    let float = raw.parse::<f64>().ok()?;
    // Whole and within ±2⁵³ (so neither infinite nor NaN): the cast is exact.
    (float.fract() == 0.0 && float.abs() <= EXACT).then_some(float as i64)
}

/// `?userId=` of the user-scoped reads.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// The user whose data to read. With end-user authentication on it may be left
    /// out: the user is the bearer token's, and a `userId` given must be that user.
    #[param(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
}

/// `?userId=&page=&size=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserPageQuery {
    /// The user whose data to read. With end-user authentication on it may be left
    /// out: the user is the bearer token's, and a `userId` given must be that user.
    #[param(required = true, nullable = false, minimum = 1)]
    pub user_id: Option<i64>,
    /// 1-based page number (default 1).
    #[param(nullable = false, minimum = 1, maximum = 1_000_000)]
    pub page: Option<i64>,
    /// Items per page (default 20).
    #[param(nullable = false, minimum = 1, maximum = 100)]
    pub size: Option<i64>,
}

impl UserPageQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::new(self.page, self.size)?)
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageDto<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub size: u32,
    pub total_count: i64,
}

impl<T> PageDto<T> {
    pub fn from_page<D>(page: domain::Page<D>, f: impl FnMut(D) -> T) -> Self {
        Self {
            page: page.request.page(),
            size: page.request.size(),
            total_count: page.total_count,
            items: page.items.into_iter().map(f).collect(),
        }
    }
}

/// The `Idempotency-Key` header of the four money- and stock-moving POSTs.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// 1–255 visible ASCII characters (`!` to `~`). A retry with the same key and body
    /// replays the first response (`Idempotent-Replayed: true`); the same key with another
    /// body is 422 `IDEMPOTENCY_KEY_REUSED`.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = r"^[!-~]+$"
    )]
    pub idempotency_key: Option<String>,
}

/// The refusals of every route that reads a JSON body, before the body is looked at.
#[derive(Debug, IntoResponses)]
pub enum BodyRefusals {
    /// `PAYLOAD_TOO_LARGE`: the body is over 64 KiB.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(Problem),
    /// `UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    NotJson(Problem),
}

#[cfg(test)]
mod tests {
    use domain::ProductId;

    use super::*;

    fn id(raw: &str) -> Result<i64, String> {
        path_id(raw, "id", ProductId::parse)
            .map(ProductId::get)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_whole_number_written_as_a_float_is_that_id() {
        for raw in ["49", "49.0", "4.9e1", "+49"] {
            assert_eq!(id(raw), Ok(49), "{raw}");
        }
    }

    #[test]
    fn anything_else_is_not_a_positive_integer() {
        for raw in [
            "abc",
            "1.5",
            "0",
            "-3",
            "0.0",
            "1e300",
            "inf",
            "NaN",
            "",
            "None",
            "99999999999999999999",
        ] {
            assert_eq!(
                id(raw),
                Err("400 VALIDATION_FAILED: id: must be a positive integer".to_owned()),
                "{raw}"
            );
        }
    }
}
