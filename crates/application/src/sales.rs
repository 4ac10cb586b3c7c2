//! Best sellers: the roll-up job ([`RefreshBestSellers`]) and the ranking it caches
//! ([`GetBestSellers`]), sharing one [`RankingCache`] per instance.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use domain::ports::{Clock, SalesStore};
use domain::sales::{BestSellers as Ranking, SalesWindow};
use futures_util::lock::Mutex;

/// The last good ranking of one instance, shared by [`GetBestSellers`] and
/// [`RefreshBestSellers`] (clones share it).
///
/// It only saves work: every instance computes the same ranking from the shared table,
/// and the roll-up is idempotent, so any instance may refresh at any time.
#[derive(Clone, Default)]
pub struct RankingCache {
    cached: Arc<RwLock<Option<Arc<Ranking>>>>,
    /// Held while the ranking is being computed: one computation per instance at a time.
    computing: Arc<Mutex<()>>,
}

impl RankingCache {
    fn get(&self) -> Option<Arc<Ranking>> {
        self.cached.read().ok().and_then(|c| c.clone())
    }

    /// Ranks `window` from the rolled-up table and caches the result.
    async fn rank(
        &self,
        sales: &dyn SalesStore,
        window: SalesWindow,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Arc<Ranking>> {
        let items = sales.top(window, SalesWindow::TOP).await?;
        let ranking = Arc::new(Ranking {
            window,
            items,
            refreshed_at: now,
        });
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(Arc::clone(&ranking));
        }
        Ok(ranking)
    }
}

crate::debug_opaque!(RankingCache);

/// Rolls today's window up and recomputes the ranking now: the scheduler's work every
/// refresh interval, and the admin job's.
#[derive(Clone)]
pub struct RefreshBestSellers {
    sales: Arc<dyn SalesStore>,
    clock: Arc<dyn Clock>,
    timezone: String,
    cache: RankingCache,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshBestSellersError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl RefreshBestSellers {
    pub fn new(
        sales: Arc<dyn SalesStore>,
        clock: Arc<dyn Clock>,
        timezone: String,
        cache: RankingCache,
    ) -> Self {
        Self {
            sales,
            clock,
            timezone,
            cache,
        }
    }

    /// # Errors
    /// [`RefreshBestSellersError::Unknown`] when the store fails; the previous ranking
    /// stays served.
    #[tracing::instrument(name = "refresh_best_sellers", skip_all)]
    pub async fn execute(&self) -> Result<Arc<Ranking>, RefreshBestSellersError> {
        let _computing = self.cache.computing.lock().await;
        let now = self.clock.now();
        let window = SalesWindow::ending(self.sales.business_today(self.timezone.clone()).await?);
        self.sales
            .roll_up(self.timezone.clone(), window.from, now)
            .await?;
        Ok(self.cache.rank(&*self.sales, window, now).await?)
    }
}

/// The ranking, served from memory.
///
/// A request never runs the roll-up: it gets the last good ranking, however old, while a
/// refresh runs or after one failed (the scheduler logs it). Only a cold instance, which
/// has no ranking yet, reads one on the request path: the ranking alone, from the
/// rolled-up table, once for all requests waiting (single flight), never the roll-up.
#[derive(Clone)]
pub struct GetBestSellers {
    sales: Arc<dyn SalesStore>,
    clock: Arc<dyn Clock>,
    timezone: String,
    cache: RankingCache,
}

#[derive(Debug, thiserror::Error)]
pub enum GetBestSellersError {
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl GetBestSellers {
    pub fn new(
        sales: Arc<dyn SalesStore>,
        clock: Arc<dyn Clock>,
        timezone: String,
        cache: RankingCache,
    ) -> Self {
        Self {
            sales,
            clock,
            timezone,
            cache,
        }
    }

    /// The last good ranking (shared, not copied: requests read the same one until a
    /// refresh replaces it); on a cold instance, the ranking read once from the rolled-up
    /// table.
    ///
    /// # Errors
    /// [`GetBestSellersError::Unknown`] only on a cold instance, when reading the ranking
    /// fails.
    #[tracing::instrument(name = "get_best_sellers", skip_all)]
    pub async fn execute(&self) -> Result<Arc<Ranking>, GetBestSellersError> {
        if let Some(ranking) = self.cache.get() {
            return Ok(ranking);
        }
        let _computing = self.cache.computing.lock().await;
        // Whoever held the lock may have computed it meanwhile.
        if let Some(ranking) = self.cache.get() {
            return Ok(ranking);
        }
        let now = self.clock.now();
        let window = SalesWindow::ending(self.sales.business_today(self.timezone.clone()).await?);
        Ok(self.cache.rank(&*self.sales, window, now).await?)
    }
}

crate::debug_opaque!(RefreshBestSellers, GetBestSellers);

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

    /// The two use cases of one instance, sharing its cache.
    struct Best {
        get: GetBestSellers,
        refresh: RefreshBestSellers,
    }

    fn best(sales: MockSalesStore) -> Best {
        let sales: Arc<dyn SalesStore> = Arc::new(sales);
        let cache = RankingCache::default();
        let clock = clock();
        let tz = String::from("Asia/Seoul");
        Best {
            get: GetBestSellers::new(sales.clone(), clock.clone(), tz.clone(), cache.clone()),
            refresh: RefreshBestSellers::new(sales, clock, tz, cache),
        }
    }

    #[tokio::test]
    async fn a_refresh_rolls_up_the_window_then_ranks_it() {
        let ranking = best(store(1)).refresh.execute().await.unwrap();
        assert_eq!(
            ranking.window.from,
            NaiveDate::from_ymd_opt(2026, 11, 21).unwrap()
        );
    }

    #[tokio::test]
    async fn reads_are_served_from_memory_and_never_roll_up() {
        let best = best(store(1));
        best.refresh.execute().await.unwrap();
        // No further store call is expected (`times(1)` above).
        best.get.execute().await.unwrap();
        best.get.execute().await.unwrap();
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
        let first = best.refresh.execute().await.unwrap();
        assert!(best.refresh.execute().await.is_err());
        assert_eq!(best.get.execute().await.unwrap(), first);
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
        let (a, b) = tokio::join!(best.get.execute(), best.get.execute());
        assert_eq!(a.unwrap(), b.unwrap());
    }
}
