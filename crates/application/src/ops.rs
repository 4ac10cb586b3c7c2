//! Operational use cases.

use std::sync::Arc;

use domain::ports::HealthCheck;

/// Readiness: can this instance serve requests that need the database?
#[derive(Clone)]
pub struct CheckReadiness {
    health: Arc<dyn HealthCheck>,
}

impl CheckReadiness {
    pub fn new(health: Arc<dyn HealthCheck>) -> Self {
        Self { health }
    }

    pub async fn execute(&self) -> bool {
        self.health.is_ready().await
    }
}

crate::debug_opaque!(CheckReadiness);

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::MockHealthCheck;

    #[tokio::test]
    async fn readiness_is_the_health_of_the_store() {
        for up in [true, false] {
            let mut health = MockHealthCheck::new();
            health.expect_is_ready().return_const(up);
            assert_eq!(CheckReadiness::new(Arc::new(health)).execute().await, up);
        }
    }
}
