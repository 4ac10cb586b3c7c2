//! Operations: liveness, readiness, Prometheus metrics.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};
use application::UseCases;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "UP")]
    pub status: &'static str,
    /// Readiness only: the parts that work beside the requests (`outboxListener`;
    /// `identityKeys` with a JWKS URL; `readReplica` with a read replica), by name. They
    /// never make the probe fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components: Option<BTreeMap<&'static str, ComponentHealth>>,
}

/// One part's state in the readiness detail.
#[derive(Debug, Serialize, ToSchema)]
pub struct ComponentHealth {
    /// `UP` or `DOWN`.
    #[schema(example = "UP")]
    pub status: &'static str,
    /// Why it is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    operation_id = "getLiveness",
    responses((status = 200, body = Health)))]
pub async fn live() -> web::Json<Health> {
    web::Json(Health {
        status: "UP",
        components: None,
    })
}

/// The database answers; 503 while it does not. The body also shows the parts that work
/// beside the requests (the outbox listener, the identity provider's keys), which never
/// fail the probe.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    operation_id = "getReadiness",
    responses(
        (status = 200, body = Health),
        (status = 503, description = "SERVICE_UNAVAILABLE", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(use_cases: web::Data<UseCases>) -> Result<web::Json<Health>, ApiError> {
    let readiness = use_cases.check_readiness.execute().await;
    if readiness.ready {
        let components = readiness
            .components
            .into_iter()
            .map(|(name, status)| {
                let health = match status {
                    Ok(()) => ComponentHealth {
                        status: "UP",
                        detail: None,
                    },
                    Err(detail) => ComponentHealth {
                        status: "DOWN",
                        detail: Some(detail),
                    },
                };
                (name, health)
            })
            .collect();
        Ok(web::Json(Health {
            status: "UP",
            components: Some(components),
        }))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "the database does not answer",
        ))
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    operation_id = "getMetrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    if let Err(err) = encoder.encode(&registry.gather(), &mut body) {
        tracing::error!(error = %err, "encoding metrics");
    }
    HttpResponse::Ok()
        .content_type(encoder.format_type())
        .body(body)
}
