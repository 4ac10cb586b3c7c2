//! The HTTP edge of the shop: actix-web routes, DTOs, the mapping of every error to
//! RFC 9457 problem+json, the Idempotency-Key mechanism's HTTP side, metrics, the
//! OpenAPI document and the embedded interactive docs.
//!
//! [`app`] builds the whole actix `App`; the bootstrap crate serves it.

pub mod acting;
pub mod admin;
pub mod auth;
pub mod dto;
pub mod extract;
pub mod idempotency;
pub mod openapi;
pub mod problem;
pub mod refusals;
pub mod routes;
pub mod strict_json;

use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next, from_fn};
use actix_web::{App, Error, HttpMessage, HttpResponse, ResponseError, web};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use application::UseCases;
use prometheus::Registry;
use tracing_actix_web::{RequestId, TracingLogger};
use utoipa_swagger_ui::SwaggerUi;

use crate::admin::{AdminToken, require_admin};
use crate::auth::Authentication;
use crate::problem::{ApiError, PROBLEM_JSON};
use crate::routes::{best, coupons, jobs, ops, orders, points, products, resource, users};
use domain::ports::TokenVerifier;

/// Everything the HTTP layer needs, cheap to clone into each worker.
#[derive(Clone)]
pub struct HttpState {
    pub use_cases: web::Data<UseCases>,
    pub registry: web::Data<Registry>,
    admin_token: web::Data<AdminToken>,
    authentication: web::Data<Authentication>,
    /// The best sellers' last rendered answer.
    rendered_best: web::Data<best::Rendered>,
    metrics: PrometheusMetrics,
}

impl std::fmt::Debug for HttpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpState").finish_non_exhaustive()
    }
}

impl HttpState {
    /// Builds the state; HTTP metrics go into `registry`, next to the business ones.
    ///
    /// # Errors
    /// When the HTTP metrics cannot be registered (a name clash in `registry`).
    pub fn new(
        use_cases: UseCases,
        registry: Registry,
        admin_token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let metrics = PrometheusMetricsBuilder::new("shop")
            .registry(registry.clone())
            .mask_unmatched_patterns("UNMATCHED")
            .build()
            .map_err(|e| anyhow::anyhow!("registering HTTP metrics: {e}"))?;
        Ok(Self {
            use_cases: web::Data::new(use_cases),
            registry: web::Data::new(registry),
            admin_token: web::Data::new(AdminToken::new(admin_token)),
            authentication: web::Data::new(Authentication::default()),
            rendered_best: web::Data::new(best::Rendered::default()),
            metrics,
        })
    }

    /// Turns end-user authentication on with `verifier` (it is off by default); an
    /// `Arc` lets whatever refreshes the verifier's keys share it.
    #[must_use]
    pub fn with_authentication(self, verifier: Arc<dyn TokenVerifier>) -> Self {
        Self {
            authentication: web::Data::new(Authentication::new(Some(verifier))),
            ..self
        }
    }
}

/// The application: routes, extractor configuration, middleware.
pub fn app(
    state: HttpState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(state.use_cases.clone())
        .app_data(state.registry.clone())
        .app_data(state.admin_token.clone())
        .app_data(state.authentication.clone())
        .app_data(state.rendered_best.clone())
        .app_data(extract::json_config())
        .app_data(extract::query_config())
        .app_data(extract::path_config())
        .app_data(web::PayloadConfig::new(extract::MAX_BODY_BYTES))
        // Best sellers first, outside the scopes: the cheapest answer the server gives
        // (bytes from memory), so routing is a large share of its cost; a full path compared
        // as text spares it two scope levels, each a routing pass and a boxed future (about
        // 11 % of its throughput, docs/benchmarks.md).
        .service(resource("/api/v1/products/best", "GET").route(web::get().to(best::best)))
        .service(
            // One scope per family: a scope's prefix is compared as text, so a request
            // tries the `{id}` patterns (regular expressions, run again by the metrics
            // middleware to name the route) of its own family only.
            web::scope("/api/v1")
                .service(
                    web::scope("/users")
                        .service(resource("", "POST").route(web::post().to(users::create_user)))
                        .service(resource("/{id}", "GET").route(web::get().to(users::get_user))),
                )
                .service(
                    web::scope("/points")
                        .service(resource("", "GET").route(web::get().to(points::balance)))
                        .service(resource("/charge", "POST").route(web::post().to(points::charge)))
                        .service(resource("/history", "GET").route(web::get().to(points::history)))
                        .service(resource("/use", "POST").route(web::post().to(orders::pay))),
                )
                .service(
                    web::scope("/orders")
                        .service(
                            resource("", "GET, POST")
                                .route(web::get().to(orders::list))
                                .route(web::post().to(orders::place)),
                        )
                        .service(resource("/{id}", "GET").route(web::get().to(orders::get)))
                        .service(
                            resource("/{id}/cancel", "POST").route(web::post().to(orders::cancel)),
                        ),
                )
                .service(
                    web::scope("/products")
                        .service(resource("", "GET").route(web::get().to(products::list)))
                        .service(resource("/{id}", "GET").route(web::get().to(products::get))),
                )
                .service(
                    web::scope("/coupons")
                        .service(resource("", "GET").route(web::get().to(coupons::of_user)))
                        .service(resource("/issue", "POST").route(web::post().to(coupons::issue)))
                        .service(resource("/{couponId}", "GET").route(web::get().to(coupons::get))),
                )
                .service(
                    web::scope("/admin")
                        .wrap(from_fn(require_admin))
                        .service(
                            resource("/products", "POST").route(web::post().to(products::create)),
                        )
                        .service(
                            resource("/products/{id}", "PATCH")
                                .route(web::patch().to(products::patch)),
                        )
                        .service(
                            resource("/products/{id}/restock", "POST")
                                .route(web::post().to(products::restock)),
                        )
                        .service(
                            resource("/coupons", "POST").route(web::post().to(coupons::create)),
                        )
                        .service(
                            resource("/jobs/expire-orders", "POST")
                                .route(web::post().to(jobs::expire_orders)),
                        )
                        .service(
                            resource("/jobs/refresh-best-sellers", "POST")
                                .route(web::post().to(best::refresh)),
                        )
                        .service(resource("/outbox", "GET").route(web::get().to(jobs::outbox))),
                ),
        )
        .service(resource("/health/live", "GET").route(web::get().to(ops::live)))
        .service(resource("/health/ready", "GET").route(web::get().to(ops::ready)))
        .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
        // A named tail, not `{_:.*}`: the metrics middleware cannot name a route whose
        // parameter carries a regex, and warned on every asset of the docs page.
        .service(SwaggerUi::new("/docs/{tail}*").url(
            "/openapi.json",
            openapi::document(state.authentication.verifier().is_some()),
        ))
        .service(web::redirect("/docs", "/docs/"))
        .default_service(web::to(not_found))
        .wrap(ErrorHandlers::new().default_handler(problem_for_bare_errors))
        .wrap(from_fn(echo_request_id))
        .wrap(TracingLogger::default())
        .wrap(state.metrics)
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found("NOT_FOUND", "no such route"))
}

/// Puts the request id that tracing-actix-web gave the request on the response, so a
/// client can quote it and an operator can find the request's log lines.
async fn echo_request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req.extensions().get::<RequestId>().copied();
    let mut res = next.call(req).await?;
    if let Some(value) = id.and_then(|id| HeaderValue::from_str(&id.to_string()).ok()) {
        res.headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(res)
}

/// Safety net: an error response that some component produced without a problem body
/// (a guard, the docs service, a middleware) gets one.
fn problem_for_bare_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON));
    if is_problem {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let err = match status {
        StatusCode::NOT_FOUND => ApiError::not_found("NOT_FOUND", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "METHOD_NOT_ALLOWED", "method not allowed")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(status, "PAYLOAD_TOO_LARGE", "request body too large")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "UNSUPPORTED_MEDIA_TYPE", "unsupported content type")
        }
        StatusCode::UNAUTHORIZED => {
            ApiError::new(status, "UNAUTHORIZED", "authentication required")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            ApiError::new(status, "SERVICE_UNAVAILABLE", "temporarily unavailable")
        }
        s if s.is_server_error() => {
            ApiError::new(status, "INTERNAL", "an unexpected error occurred")
        }
        _ => ApiError::new(
            status,
            "VALIDATION_FAILED",
            "the request could not be processed",
        ),
    };
    let (req, _) = res.into_parts();
    let response: HttpResponse<BoxBody> = err.error_response();
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, response).map_into_right_body(),
    ))
}
