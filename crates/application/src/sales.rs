//! Best sellers: the roll-up job and the cached ranking.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use domain::ports::{Clock, SalesStore};
use domain::sales::{BestSellers as Ranking, SalesWindow};
use futures_util::lock::Mutex;

/// The ranking, served from memory; the scheduler refreshes it every refresh interval.
///
/// A request never runs the roll-up: it gets the last good ranking, however old, while a
/// refresh runs or after one failed (the scheduler logs it). Only a cold instance, which
/// has no ranking yet, reads one on the request path: the ranking alone, from the rolled-up
/// table, once for all requests waiting (single flight), never the roll-up. The cache only
/// saves work: every instance computes the same ranking from the shared table, and the
/// roll-up is idempotent, so any instance may refresh at any time.
#[derive(Clone)]
pub struct BestSellers {
    sales: Arc<dyn SalesStore>,
    clock: Arc<dyn Clock>,
    timezone: String,
    cached: Arc<RwLock<Option<Ranking>>>,
    /// Held while the ranking is being computed: one computation per instance at a time.
    computing: Arc<Mutex<()>>,
}

impl BestSellers {
    pub fn new(sales: Arc<dyn SalesStore>, clock: Arc<dyn Clock>, timezone: String) -> Self {
        Self {
            sales,
            clock,
            timezone,
            cached: Arc::default(),
            computing: Arc::default(),
        }
    }

    /// Rolls today's window up and recomputes the ranking now (the scheduler's and the
    /// admin job's work).
    ///
    /// # Errors
    /// When the store fails; the previous ranking stays served.
    #[tracing::instrument(name = "refresh_best_sellers", skip_all)]
    pub async fn refresh(&self) -> anyhow::Result<Ranking> {
        let _computing = self.computing.lock().await;
        let now = self.clock.now();
        let window = SalesWindow::ending(self.sales.business_today(self.timezone.clone()).await?);
        self.sales
            .roll_up(self.timezone.clone(), window.from, now)
            .await?;
        self.rank(window, now).await
    }

    /// The last good ranking; on a cold instance, the ranking read once from the
    /// rolled-up table.
    ///
    /// # Errors
    /// Only on a cold instance, when reading the ranking fails.
    pub async fn get(&self) -> anyhow::Result<Ranking> {
        if let Some(ranking) = self.cached() {
            return Ok(ranking);
        }
        let _computing = self.computing.lock().await;
        // Whoever held the lock may have computed it meanwhile.
        if let Some(ranking) = self.cached() {
            return Ok(ranking);
        }
        let now = self.clock.now();
        let window = SalesWindow::ending(self.sales.business_today(self.timezone.clone()).await?);
        self.rank(window, now).await
    }

    fn cached(&self) -> Option<Ranking> {
        self.cached.read().ok().and_then(|c| c.clone())
    }

    /// Ranks `window` from the rolled-up table and caches the result.
    async fn rank(&self, window: SalesWindow, now: DateTime<Utc>) -> anyhow::Result<Ranking> {
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

    fn best(sales: MockSalesStore) -> BestSellers {
        BestSellers::new(Arc::new(sales), clock(), "Asia/Seoul".into())
    }

    #[tokio::test]
    async fn a_refresh_rolls_up_the_window_then_ranks_it() {
        let ranking = best(store(1)).refresh().await.unwrap();
        assert_eq!(
            ranking.window.from,
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
    }

    #[tokio::test]
    async fn reads_are_served_from_memory_and_never_roll_up() {
        let best = best(store(1));
        best.refresh().await.unwrap();
        // No further store call is expected (`times(1)` above).
        best.get().await.unwrap();
        best.get().await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_last_good_ranking_served() {
        let mut sales = MockSalesStore::new();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        sales.expect_business_today().returning(move |_| Ok(today));
        let mut rolls = 0;
        sales.expect_roll_up().returning(move |_, _, _| {
            rolls += 1;
            if rolls == 1 {
                Ok(())
            } else {
                Err(anyhow::anyhow!("deadlock detected"))
            }
        });
        sales.expect_top().times(1).returning(|_, _| Ok(vec![]));
        let best = best(sales);
        let first = best.refresh().await.unwrap();
        assert!(best.refresh().await.is_err());
        assert_eq!(best.get().await.unwrap(), first);
    }

    #[tokio::test]
    async fn a_cold_instance_reads_the_ranking_once_without_rolling_up() {
        let mut sales = MockSalesStore::new();
        let today = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        sales
            .expect_business_today()
            .times(1)
            .returning(move |_| Ok(today));
        sales.expect_roll_up().never();
        sales.expect_top().times(1).returning(|_, _| Ok(vec![]));
        let best = best(sales);
        let (a, b) = tokio::join!(best.get(), best.get());
        assert_eq!(a.unwrap(), b.unwrap());
    }
}
