//! `/api/v1/users`.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use application::UseCases;
use application::users::{CreateUserError, GetUserError, RegisterSubjectError};
use domain::UserId;
use domain::user::{Registration, User};
use serde::Serialize;
use utoipa::ToSchema;

use crate::acting::{Acting, acting_user};
use crate::auth::Caller;
use crate::dto::{BodyRefusals, path_id};
use crate::problem::ApiError;
use crate::refusals::{Authenticated, Invalid, Refused};
use crate::strict_json::StrictValue;
use chrono::{DateTime, Utc};

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub id: i64,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        Self {
            id: user.id.get(),
            created_at: user.created_at,
        }
    }
}

/// The optional body of `POST /api/v1/users`: any JSON object; nothing in it is read.
#[derive(Debug, ToSchema)]
pub struct CreateUserRequest {}

impl From<CreateUserError> for ApiError {
    fn from(err: CreateUserError) -> Self {
        match err {
            CreateUserError::Unknown(e) => Self::unknown(&e),
        }
    }
}

impl From<RegisterSubjectError> for ApiError {
    fn from(err: RegisterSubjectError) -> Self {
        match err {
            RegisterSubjectError::Unknown(e) => Self::unknown(&e),
        }
    }
}

crate::refusals!(GetUserError {
    UserNotFound;
    unlisted Unknown
});

impl From<GetUserError> for ApiError {
    fn from(err: GetUserError) -> Self {
        match err {
            GetUserError::UserNotFound => Self::not_found("USER_NOT_FOUND", "no user with this id"),
            GetUserError::Unknown(e) => Self::unknown(&e),
        }
    }
}

/// Registers a user with an empty wallet. The body, if any, must be a JSON object.
///
/// With end-user authentication on, the user is the bearer token's subject's: created
/// the first time (201), the same user every time after (200). A subject never gets two
/// users, however many requests race.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    operation_id = "createUser",
    request_body(content = CreateUserRequest, description = "Optional: no body, or a JSON object (`{}`); its fields are ignored", content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = UserResponse,
         headers(("Location" = String, description = "URL of the new user"))),
        (status = 200, description = "End-user authentication on: the token's subject already had this user", body = UserResponse),
        Refused<(Invalid, Authenticated)>,
        BodyRefusals,
    )
)]
pub async fn create_user(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !body.is_empty() {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let essence = v.split(';').next().unwrap_or_default().trim();
                essence.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "request bodies must be application/json",
            ));
        }
        let StrictValue(parsed) = serde_json::from_slice(&body)
            .map_err(|e| ApiError::malformed(format!("the request body could not be read: {e}")))?;
        if !parsed.is_object() {
            return Err(ApiError::malformed(
                "the request body must be a JSON object",
            ));
        }
    }
    let Some(principal) = caller.principal() else {
        let user = use_cases.create_user.execute().await?;
        return Ok(created(user));
    };
    // The verifier refused a token whose subject the shop cannot hold (over 255
    // characters, or a control character) as any unusable token.
    match use_cases
        .register_subject
        .execute(&principal.subject)
        .await?
    {
        (user, Registration::Created) => Ok(created(user)),
        (user, Registration::Existing) => Ok(HttpResponse::Ok().json(UserResponse::from(user))),
    }
}

fn created(user: User) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/users/{}", user.id)))
        .json(UserResponse::from(user))
}

/// One user. With end-user authentication on, only the token's own user (403
/// `FORBIDDEN` for any other id, existing or not).
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    operation_id = "getUser",
    params(("id" = i64, Path, minimum = 1, description = "User id")),
    responses(
        (status = 200, body = UserResponse),
        Refused<(Invalid, Acting, GetUserError)>,
    )
)]
pub async fn get_user(
    use_cases: web::Data<UseCases>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<UserResponse>, ApiError> {
    let id = path_id(&id, "id", UserId::parse)?;
    let id = acting_user(&use_cases, &caller, Some(id.get())).await?;
    Ok(web::Json(use_cases.get_user.execute(id).await?.into()))
}
