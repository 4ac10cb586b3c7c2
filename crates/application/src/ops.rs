//! Operational use cases.

use std::sync::Arc;

use domain::ports::{ComponentStatus, HealthCheck};

/// What the readiness probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// The database answers: this instance can serve requests.
    pub ready: bool,
    /// Each background part by name: `Ok`, or why it does not work now. None of them
    /// decides `ready`, since requests are served without them.
    pub components: Vec<(&'static str, Result<(), String>)>,
}

/// Readiness: can this instance serve requests that need the database, and how are the
/// parts that work beside the requests doing?
#[derive(Clone)]
pub struct CheckReadiness {
    health: Arc<dyn HealthCheck>,
    components: Vec<Arc<dyn ComponentStatus>>,
}

impl CheckReadiness {
    pub fn new(health: Arc<dyn HealthCheck>, components: Vec<Arc<dyn ComponentStatus>>) -> Self {
        Self { health, components }
    }

    pub async fn execute(&self) -> Readiness {
        Readiness {
            ready: self.health.is_ready().await,
            components: self
                .components
                .iter()
                .map(|component| (component.name(), component.status()))
                .collect(),
        }
    }
}

crate::debug_opaque!(CheckReadiness);

#[cfg(test)]
mod tests {
    use super::*;
    use domain::ports::{MockComponentStatus, MockHealthCheck};

    fn component(name: &'static str, status: Result<(), String>) -> Arc<dyn ComponentStatus> {
        let mut component = MockComponentStatus::new();
        component.expect_name().return_const(name);
        component.expect_status().return_const(status);
        Arc::new(component)
    }

    #[tokio::test]
    async fn readiness_is_the_health_of_the_store_whatever_the_components_say() {
        for up in [true, false] {
            let mut health = MockHealthCheck::new();
            health.expect_is_ready().return_const(up);
            let readiness = CheckReadiness::new(
                Arc::new(health),
                vec![
                    component("listener", Err("down".to_owned())),
                    component("keys", Ok(())),
                ],
            )
            .execute()
            .await;
            assert_eq!(
                readiness,
                Readiness {
                    ready: up,
                    components: vec![("listener", Err("down".to_owned())), ("keys", Ok(()))],
                }
            );
        }
    }
}
