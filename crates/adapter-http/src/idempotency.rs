//! Running a POST under its `Idempotency-Key`, shared by every money- or stock-moving
//! endpoint: claim the key, run the use case with a completion that stores the
//! response atomically with the effect, record refusals, release on failures worth
//! retrying, and replay finished requests.

use std::future::Future;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use application::UseCases;
use application::idempotency::{Begin, IdempotencyError};
use domain::UserId;
use domain::idempotency::{
    Completion, Fingerprint, IdempotencyKey, IdempotencyScope, StoredResponse,
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::problem::{ApiError, PROBLEM_JSON};

pub const HEADER: &str = "Idempotency-Key";

/// A success response: status, JSON body, and the created thing's URL if any.
/// Replays send status and body (API.md), not the `Location`.
#[derive(Debug)]
pub struct Rendered {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

impl Rendered {
    pub fn json<D: Serialize>(status: StatusCode, dto: &D) -> Self {
        Self {
            status,
            body: json_body(dto),
            location: None,
        }
    }

    #[must_use]
    pub fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    fn into_response(self) -> HttpResponse {
        let mut response = respond(self.status, self.body);
        if let Some(location) = self
            .location
            .and_then(|l| header::HeaderValue::from_str(&l).ok())
        {
            response.headers_mut().insert(header::LOCATION, location);
        }
        response
    }
}

/// How a use case's success becomes a response.
pub type Render<T> = fn(&T) -> Rendered;

/// Serializes a response DTO; serialization of our own DTOs does not fail in practice.
pub fn json_body<D: Serialize>(dto: &D) -> Vec<u8> {
    serde_json::to_vec(dto).unwrap_or_default()
}

/// `render` as a [`Completion`] needs it: status and body, which are stored; the
/// `Location` (not stored, not replayed) is left in `location` for the first answer.
fn stored<T>(
    render: Render<T>,
    location: Arc<Mutex<Option<String>>>,
) -> impl Fn(&T) -> StoredResponse + Send + Sync {
    move |out| {
        let rendered = render(out);
        if let Ok(mut slot) = location.lock() {
            *slot = rendered.location;
        }
        StoredResponse {
            status: rendered.status.as_u16(),
            body: rendered.body,
        }
    }
}

fn respond(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let content_type = if status.is_client_error() || status.is_server_error() {
        PROBLEM_JSON
    } else {
        "application/json"
    };
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, content_type))
        .body(body)
}

/// Parses the optional `Idempotency-Key` header.
///
/// # Errors
/// 400 when the header is present but empty, too long, or not visible ASCII.
pub fn key_of(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(value) = req.headers().get(HEADER) else {
        return Ok(None);
    };
    let raw = value
        .to_str()
        .map_err(|_| ApiError::validation(HEADER, "must contain only visible ASCII characters"))?;
    Ok(Some(IdempotencyKey::new(raw)?))
}

/// A request body that names the user it acts for: `userId`, which may be left out with a
/// token.
pub trait NamesUser: Serialize + Clone {
    fn named_user(&mut self) -> &mut Option<i64>;
}

/// The fingerprint of `body` acting for `user_id`: its canonical JSON with `userId` filled
/// in, so that a request leaving its user out (with a token) and the same request naming
/// that user are one request. A request that names its user is hashed as it is.
fn fingerprint<B: NamesUser>(body: &B, user_id: UserId) -> Fingerprint {
    let mut named = body.clone();
    named.named_user().get_or_insert(user_id.get());
    Fingerprint(Sha256::digest(json_body(&named)).to_vec())
}

/// Runs `run` at most once per (user, method, route pattern, key).
///
/// `body` is the parsed request (see [`fingerprint`]), `render` turns the use case's
/// output into the success response.
pub async fn idempotent<T, E, F, Fut, B>(
    use_cases: &UseCases,
    req: &HttpRequest,
    user_id: UserId,
    body: &B,
    render: Render<T>,
    run: F,
) -> Result<HttpResponse, ApiError>
where
    T: 'static,
    B: NamesUser,
    E: Into<ApiError>,
    F: FnOnce(Option<Completion<T>>) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let Some(key) = key_of(req)? else {
        let out = run(None).await.map_err(Into::into)?;
        return Ok(render(&out).into_response());
    };
    let scope = IdempotencyScope {
        user_id,
        method: req.method().as_str().to_owned(),
        // The matched route's pattern, not the raw path: any spelling of one route
        // (`/points/%63harge`) is the same key.
        path: req.match_pattern().unwrap_or_else(|| req.path().to_owned()),
        key,
    };
    let fingerprint = fingerprint(body, user_id);
    let token = match use_cases.idempotency.begin(&scope, &fingerprint).await {
        Ok(Begin::Proceed(token)) => token,
        Ok(Begin::Replay(response)) => {
            let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
            let mut replay = respond(status, response.body);
            replay.headers_mut().insert(
                header::HeaderName::from_static("idempotent-replayed"),
                header::HeaderValue::from_static("true"),
            );
            return Ok(replay);
        }
        Err(IdempotencyError::KeyReused) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "IDEMPOTENCY_KEY_REUSED",
                "this Idempotency-Key was already used with a different request body",
            ));
        }
        Err(IdempotencyError::InUse) => {
            return Err(ApiError::conflict(
                "IDEMPOTENCY_KEY_IN_USE",
                "a request with this Idempotency-Key is still being processed; retry later",
            ));
        }
        Err(IdempotencyError::Unknown(e)) => return Err(ApiError::unknown(&e)),
    };
    let location = Arc::default();
    let completion = Completion::new(scope.clone(), token, stored(render, Arc::clone(&location)));
    let receipt = completion.receipt();
    match run(Some(completion)).await {
        // The bytes stored with the effect are the bytes sent.
        Ok(out) => Ok(match receipt.take() {
            Some(response) => Rendered {
                status: StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK),
                body: response.body,
                location: location.lock().ok().and_then(|mut l| l.take()),
            },
            None => {
                tracing::error!("an idempotent operation succeeded without storing its response");
                render(&out)
            }
        }
        .into_response()),
        Err(err) => {
            let err: ApiError = err.into();
            let settle = if err.status().is_client_error() && err.code() != "IDEMPOTENCY_KEY_IN_USE"
            {
                // A refusal changed nothing: retries get the same answer.
                let response = StoredResponse {
                    status: err.status().as_u16(),
                    body: err.body(),
                };
                use_cases.idempotency.finish(&scope, token, &response).await
            } else {
                // Worth retrying (database down, a bug fixed): let the key go.
                use_cases.idempotency.abandon(&scope, token).await
            };
            if let Err(e) = settle {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "could not settle an idempotency key; it frees itself when its lease lapses"
                );
            }
            Err(err)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::routes::points::ChargeRequest;

    fn charge(user_id: Option<i64>, amount: i64) -> ChargeRequest {
        serde_json::from_value(serde_json::json!({"userId": user_id, "amount": amount})).unwrap()
    }

    #[test]
    fn leaving_the_user_out_is_the_request_naming_the_acting_user() {
        let alice = UserId::new(7).unwrap();
        assert_eq!(
            fingerprint(&charge(None, 100), alice),
            fingerprint(&charge(Some(7), 100), alice)
        );
        assert_ne!(
            fingerprint(&charge(None, 100), alice),
            fingerprint(&charge(None, 101), alice)
        );
    }

    #[test]
    fn a_request_naming_its_user_is_hashed_as_it_is() {
        let body = charge(Some(7), 100);
        assert_eq!(
            fingerprint(&body, UserId::new(7).unwrap()),
            Fingerprint(Sha256::digest(serde_json::to_vec(&body).unwrap()).to_vec()),
            "the fingerprints of keys stored before are unchanged"
        );
    }
}
