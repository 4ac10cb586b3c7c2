//! Best sellers: the roll-up job and the cached ranking.

use std::sync::{Arc, RwLock};

use chrono::Duration;
use domain::ports::{Clock, SalesStore};
use domain::sales::{BestSellers as Ranking, SalesWindow};

/// The ranking, served from memory and at most one refresh interval old.
///
/// The cache only saves work: every instance computes the same ranking from the shared
/// table, and the roll-up is idempotent, so any instance may refresh at any time.
#[derive(Clone)]
pub struct BestSellers {
    sales: Arc<dyn SalesStore>,
    clock: Arc<dyn Clock>,
    timezone: String,
    max_age: Duration,
    cached: Arc<RwLock<Option<Ranking>>>,
}

impl BestSellers {
    pub fn new(
        sales: Arc<dyn SalesStore>,
        clock: Arc<dyn Clock>,
        timezone: String,
        max_age: Duration,
    ) -> Self {
        Self {
            sales,
            clock,
            timezone,
            max_age,
            cached: Arc::default(),
        }
    }

    /// Rolls today's window up and recomputes the ranking now (the scheduler's and the
    /// admin job's work).
    ///
    /// # Errors
    /// When the store fails; the previous ranking stays served.
    #[tracing::instrument(name = "refresh_best_sellers", skip_all)]
    pub async fn refresh(&self) -> anyhow::Result<Ranking> {
        let now = self.clock.now();
        let window = SalesWindow::ending(self.sales.business_today(self.timezone.clone()).await?);
        self.sales
            .roll_up(self.timezone.clone(), window.from, now)
            .await?;
        let items = self.sales.top(window, SalesWindow::TOP).await?;
        let ranking = Ranking {
            window,
            items,
            refreshed_at: now,
        };
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(ranking.clone());
        }
        Ok(ranking)
    }

    /// The cached ranking, refreshed first when missing or older than the interval.
    ///
    /// # Errors
    /// When a needed refresh fails.
    pub async fn get(&self) -> anyhow::Result<Ranking> {
        let fresh = self
            .cached
            .read()
            .ok()
            .and_then(|c| c.clone())
            .filter(|r| self.clock.now() - r.refreshed_at <= self.max_age);
        match fresh {
            Some(ranking) => Ok(ranking),
            None => self.refresh().await,
        }
    }
}

crate::debug_opaque!(BestSellers);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, Utc};
    use domain::ports::{MockClock, MockSalesStore};

    fn store(calls: usize) -> MockSalesStore {
        let mut sales = MockSalesStore::new();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        sales
            .expect_business_today()
            .withf(|tz| tz == "Asia/Seoul")
            .times(calls)
            .returning(move |_| Ok(today));
        sales
            .expect_roll_up()
            .withf(move |_, from, _| *from == NaiveDate::from_ymd_opt(2026, 11, 21).unwrap())
            .times(calls)
            .returning(|_, _, _| Ok(()));
        sales
            .expect_top()
            .withf(|w, limit| w.to == NaiveDate::from_ymd_opt(2026, 11, 23).unwrap() && *limit == 5)
            .times(calls)
            .returning(|_, _| Ok(vec![]));
        sales
    }

    fn clock() -> Arc<MockClock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(Utc::now());
        Arc::new(clock)
    }

    #[tokio::test]
    async fn a_refresh_rolls_up_the_window_then_ranks_it() {
        let ranking = BestSellers::new(
            Arc::new(store(1)),
            clock(),
            "Asia/Seoul".into(),
            Duration::seconds(60),
        )
        .refresh()
        .await
        .unwrap();
        assert_eq!(
            ranking.window.from,
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
    }

    #[tokio::test]
    async fn reads_within_the_interval_are_served_from_memory() {
        let best = BestSellers::new(
            Arc::new(store(1)),
            clock(),
            "Asia/Seoul".into(),
            Duration::seconds(60),
        );
        best.get().await.unwrap();
        best.get().await.unwrap();
    }

    #[tokio::test]
    async fn a_stale_ranking_is_refreshed_on_read() {
        let best = BestSellers::new(
            Arc::new(store(2)),
            clock(),
            "Asia/Seoul".into(),
            Duration::seconds(-1),
        );
        best.get().await.unwrap();
        best.get().await.unwrap();
    }
}
