//! Concurrent reads of one shape answered together: [`Grouped`].
//!
//! A read by key (a balance by user, a product by id) costs one statement, but around it a
//! hand-off to the blocking pool and a connection checkout, which cost the server more than
//! the statement costs the database. `Grouped` runs a read at once while fewer than `lanes`
//! reads of its shape are in flight; a read that arrives while they are waits, and when a
//! lane frees, every read waiting (up to `max_group`, oldest first) is answered by one
//! `WHERE key = ANY($1)` statement, on one checkout.
//!
//! A lane is one blocking-pool thread: the read that takes it is fetched there, and the
//! thread then answers the groups that gathered meanwhile, one after another, until nobody
//! waits. A group therefore starts as soon as the statement before it has been answered,
//! without a hand-off back to the async workers (which are busy writing the responses) and
//! out to the blocking pool again.
//!
//! - A read alone goes at once: no timer, one hand-off to the blocking pool, as without
//!   grouping.
//! - Fresh: a group's statement starts after its youngest member arrived, so a read that
//!   starts after a write's response was sent sees that write.
//! - Each member gets exactly its own answer: its row, or `None` for a key with no row.
//! - A failing statement (or one that panics) fails its group only, each member getting
//!   the error (its unavailability kept, so the edge still answers 503); the next group
//!   runs anew.
//! - A read may be cancelled (its caller gone): it is still fetched with its group, and
//!   the answer is dropped; the lane goes on to the reads waiting.
//! - No starvation: waiting reads are taken oldest first.
//!
//! Charges without an idempotency key go through it too (`points.rs`): each charge is its
//! own key, and the group's statement credits every member it can, answering each; a
//! member it leaves unanswered (`None`: its wallet was held elsewhere) goes alone. A
//! cancelled member's charge is still written, as it was before grouping (a blocking task
//! is never cancelled). Placements and payments without a key likewise (`orders.rs`):
//! the group's transaction answers every member the domain could decide, and the others
//! go alone.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};

use domain::error::{StoreUnavailable, is_unavailable};
use tokio::sync::oneshot;

/// Statements (or, for placements and payments, transactions) of one shape in flight at
/// once, per instance; the calls that arrive while it runs wait, and go together in the
/// next one. One: with two, groups were half as large and each cost the server about as
/// much, so the server spent more per call and answered fewer. Alternating 6 s runs at 32
/// connections, one lane against two: product detail 47,600–48,600 against 39,500–44,400
/// reads a second, balance 51,900–52,000 against 43,900–44,500, charge 14,800–16,200
/// against 14,500–14,900; order + pay 3,440–3,590 against 3,030–3,210 (10 s runs).
pub(crate) const LANES: usize = 1;
/// Keys in one grouped statement at most.
pub(crate) const MAX_GROUP: usize = 128;

/// The statement of a group, run on a blocking-pool thread: the keys (each once) in, the
/// rows found by key out.
pub(crate) type Fetch<K, V> = Arc<dyn Fn(Vec<K>) -> anyhow::Result<HashMap<K, V>> + Send + Sync>;

type Reply<V> = oneshot::Sender<anyhow::Result<Option<V>>>;

/// Reads of one shape, grouped while they overlap.
pub(crate) struct Grouped<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Grouped<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<K, V> std::fmt::Debug for Grouped<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grouped")
            .field("lanes", &self.inner.lanes)
            .field("max_group", &self.inner.max_group)
            .finish_non_exhaustive()
    }
}

struct Inner<K, V> {
    fetch: Fetch<K, V>,
    lanes: usize,
    max_group: usize,
    state: Mutex<State<K, V>>,
}

struct State<K, V> {
    /// Statements in flight (lanes taken).
    running: usize,
    waiting: VecDeque<(K, Reply<V>)>,
}

impl<K, V> Grouped<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// Reads by `fetch`, at most `lanes` statements in flight, at most `max_group` keys in
    /// one statement (both at least 1).
    pub(crate) fn new(fetch: Fetch<K, V>, lanes: usize, max_group: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                fetch,
                lanes: lanes.max(1),
                max_group: max_group.max(1),
                state: Mutex::new(State {
                    running: 0,
                    waiting: VecDeque::new(),
                }),
            }),
        }
    }

    /// The row of `key`, or `None` when there is none.
    ///
    /// # Errors
    /// When the statement that read it failed.
    pub(crate) async fn get(&self, key: K) -> anyhow::Result<Option<V>> {
        let (reply, answer) = oneshot::channel();
        let takes_lane = {
            let mut state = self.inner.lock();
            if state.running < self.inner.lanes {
                state.running += 1;
                Some((key, reply))
            } else {
                state.waiting.push_back((key, reply));
                None
            }
        };
        if let Some(alone) = takes_lane {
            let inner = Arc::clone(&self.inner);
            // The read that takes the lane is fetched in its caller's span.
            let span = tracing::Span::current();
            drop(tokio::task::spawn_blocking(move || {
                inner.drive(vec![alone], span);
            }));
        }
        answer
            .await
            .map_err(|_| anyhow::anyhow!("a grouped read was dropped unanswered"))?
    }
}

impl<K, V> Inner<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<K, V>> {
        // The state is consistent between statements: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> Inner<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    /// The next group, oldest first; none (and the lane released) when nobody waits.
    fn next_group(&self) -> Option<Vec<(K, Reply<V>)>> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            state.running = state.running.saturating_sub(1);
            return None;
        }
        let take = state.waiting.len().min(self.max_group);
        Some(state.waiting.drain(..take).collect())
    }

    /// Answers `group` and then every group that gathers meanwhile, on this blocking
    /// thread (the lane), until nobody waits; the first in `span`.
    fn drive(&self, mut group: Vec<(K, Reply<V>)>, span: tracing::Span) {
        let mut span = Some(span);
        loop {
            // Each key once, in arrival order: members asking for the same row share it.
            let mut members: HashMap<K, usize> = HashMap::with_capacity(group.len());
            let keys = group
                .iter()
                .filter(|(key, _)| {
                    let count = members.entry(key.clone()).or_insert(0);
                    *count += 1;
                    *count == 1
                })
                .map(|(key, _)| key.clone())
                .collect();
            let fetched = {
                let _entered = span.take().map(tracing::Span::entered);
                catch_unwind(AssertUnwindSafe(|| (self.fetch)(keys)))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a grouped statement panicked")))
            };
            match fetched {
                Ok(mut found) => {
                    for (key, reply) in group {
                        // The last member of a key takes its row; the others get a copy.
                        let left = members.get_mut(&key).map_or(0, |count| {
                            *count = count.saturating_sub(1);
                            *count
                        });
                        let answer = if left == 0 {
                            found.remove(&key)
                        } else {
                            found.get(&key).cloned()
                        };
                        // A member whose caller is gone is not listening: nothing to do.
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(err) => {
                    let unavailable = is_unavailable(&err);
                    let message = format!("{err:#}");
                    for (_, reply) in group {
                        let err = if unavailable {
                            anyhow::Error::new(StoreUnavailable).context(message.clone())
                        } else {
                            anyhow::anyhow!("{message}")
                        };
                        let _ = reply.send(Err(err));
                    }
                }
            }
            match self.next_group() {
                Some(next) => group = next,
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// The keys of each statement, in order.
    type Groups = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A fetch that records each group's keys, waits `delay`, and answers even keys with
    /// their double; a group holding `fail_on` fails (unavailable when `unavailable`).
    fn recording(
        delay: Duration,
        fail_on: Option<u32>,
        unavailable: bool,
    ) -> (Fetch<u32, u32>, Groups) {
        let groups = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&groups);
        let fetch: Fetch<u32, u32> = Arc::new(move |keys: Vec<u32>| {
            seen.lock().unwrap().push(keys.clone());
            std::thread::sleep(delay);
            if fail_on.is_some_and(|bad| keys.contains(&bad)) {
                let err = anyhow::anyhow!("the statement failed");
                return Err(if unavailable {
                    err.context(StoreUnavailable)
                } else {
                    err
                });
            }
            Ok(keys
                .into_iter()
                .filter(|k| k % 2 == 0)
                .map(|k| (k, k * 2))
                .collect())
        });
        (fetch, groups)
    }

    #[tokio::test]
    async fn a_read_alone_runs_at_once_by_itself() {
        let (fetch, groups) = recording(Duration::ZERO, None, false);
        let grouped = Grouped::new(fetch, 1, 100);
        assert_eq!(grouped.get(4).await.unwrap(), Some(8));
        assert_eq!(grouped.get(3).await.unwrap(), None, "no row: its own None");
        assert_eq!(*groups.lock().unwrap(), vec![vec![4], vec![3]]);
    }

    #[tokio::test]
    async fn overlapping_reads_share_one_statement_and_each_gets_its_own_answer() {
        let (fetch, groups) = recording(Duration::from_millis(50), None, false);
        let grouped = Grouped::new(fetch, 1, 100);
        let reads = (0..40).map(|k| {
            let grouped = grouped.clone();
            tokio::spawn(async move { (k, grouped.get(k % 20).await.unwrap()) })
        });
        for read in futures_util::future::join_all(reads).await {
            let (k, answer) = read.unwrap();
            let key = k % 20;
            assert_eq!(answer, (key % 2 == 0).then_some(key * 2), "read {k}");
        }
        let groups = groups.lock().unwrap();
        assert_eq!(
            groups.len(),
            2,
            "one alone, then everyone who waited: {groups:?}"
        );
        assert_eq!(
            groups.iter().map(Vec::len).sum::<usize>(),
            21,
            "the first alone, then each of the 20 keys once"
        );
    }

    /// A read that arrives while a statement is in flight is not answered by it: it waits
    /// for a statement that starts after it arrived, so it sees every write before it.
    #[tokio::test]
    async fn a_read_never_joins_a_statement_already_running() {
        let version = Arc::new(AtomicUsize::new(0));
        let read_at_start = Arc::clone(&version);
        let fetch: Fetch<u32, usize> = Arc::new(move |keys: Vec<u32>| {
            // The statement's snapshot: the version when it starts.
            let seen = read_at_start.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(30));
            Ok(keys.into_iter().map(|k| (k, seen)).collect())
        });
        let grouped = Grouped::new(fetch, 1, 100);
        let before = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(1).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        // A write commits and answers while that statement runs; then the same key is read.
        version.store(1, Ordering::SeqCst);
        let after = grouped.get(1).await.unwrap();
        assert_eq!(before.await.unwrap().unwrap(), Some(0));
        assert_eq!(after, Some(1), "the later read saw the write");
    }

    #[tokio::test]
    async fn groups_hold_at_most_max_group_keys_oldest_first() {
        let (fetch, groups) = recording(Duration::from_millis(20), None, false);
        let grouped = Grouped::new(fetch, 1, 8);
        let first = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(0).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut later = Vec::new();
        for k in 1..=20 {
            let grouped = grouped.clone();
            later.push(tokio::spawn(async move { grouped.get(k).await }));
            tokio::task::yield_now().await;
        }
        first.await.unwrap().unwrap();
        for read in later {
            read.await.unwrap().unwrap();
        }
        let groups = groups.lock().unwrap();
        assert_eq!(
            *groups,
            vec![
                vec![0],
                (1..=8).collect::<Vec<_>>(),
                (9..=16).collect(),
                (17..=20).collect()
            ]
        );
    }

    #[tokio::test]
    async fn a_failing_statement_fails_its_group_only_and_keeps_unavailability() {
        let (fetch, groups) = recording(Duration::from_millis(30), Some(13), true);
        let grouped = Grouped::new(fetch, 1, 3);
        let first = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(10).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut later = Vec::new();
        for k in [12, 13, 14, 16] {
            let grouped = grouped.clone();
            later.push((k, tokio::spawn(async move { grouped.get(k).await })));
            tokio::task::yield_now().await;
        }
        assert_eq!(first.await.unwrap().unwrap(), Some(20));
        for (k, read) in later {
            let answer = read.await.unwrap();
            if k == 16 {
                assert_eq!(answer.unwrap(), Some(32), "the next group runs anew");
            } else {
                let err = answer.expect_err("in the failing group");
                assert!(is_unavailable(&err), "{err:#}");
                assert!(format!("{err:#}").contains("the statement failed"));
            }
        }
        assert_eq!(groups.lock().unwrap().len(), 3);
    }

    /// A statement that panics (a bug) fails its group like an error does, and the lane
    /// goes on: the reads after it are answered.
    #[tokio::test]
    async fn a_panicking_statement_fails_its_group_only() {
        let fetch: Fetch<u32, u32> = Arc::new(|keys: Vec<u32>| {
            std::thread::sleep(Duration::from_millis(20));
            assert!(!keys.contains(&13), "the statement panicked");
            Ok(keys.into_iter().map(|k| (k, k)).collect())
        });
        let grouped = Grouped::new(fetch, 1, 100);
        let alone = grouped.get(13).await.expect_err("alone");
        assert!(format!("{alone:#}").contains("panicked"), "{alone:#}");
        let first = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(1).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let together = [13, 5].map(|k| {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(k).await })
        });
        assert_eq!(first.await.unwrap().unwrap(), Some(1));
        for read in together {
            read.await.unwrap().expect_err("in the group that panicked");
        }
        assert_eq!(grouped.get(7).await.unwrap(), Some(7), "the lane goes on");
    }

    #[tokio::test]
    async fn a_cancelled_read_leaves_the_others_answered() {
        let (fetch, _) = recording(Duration::from_millis(30), None, false);
        let grouped = Grouped::new(fetch, 1, 100);
        // The lane holder's caller is cancelled half-way: its statement finishes, and the
        // lane goes on to those waiting.
        let holder = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(2).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waiting_then_cancelled = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(4).await })
        };
        let waiting = {
            let grouped = grouped.clone();
            tokio::spawn(async move { grouped.get(6).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        holder.abort();
        waiting_then_cancelled.abort();
        assert_eq!(waiting.await.unwrap().unwrap(), Some(12));
        // And the lane is free again: a read alone still runs.
        assert_eq!(grouped.get(8).await.unwrap(), Some(16));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_steady_stream_starves_no_read() {
        let (fetch, _) = recording(Duration::from_millis(2), None, false);
        let grouped = Grouped::new(fetch, 2, 16);
        let answered = Arc::new(AtomicUsize::new(0));
        let readers = (0..64).map(|n| {
            let grouped = grouped.clone();
            let answered = Arc::clone(&answered);
            tokio::spawn(async move {
                for i in 0..50_u32 {
                    let key = (n * 50 + i) * 2;
                    let started = std::time::Instant::now();
                    assert_eq!(grouped.get(key).await.unwrap(), Some(key * 2));
                    // 64 readers, 16 per group, 2 lanes: a read waits for at most a few
                    // statements, never for the stream to stop.
                    assert!(started.elapsed() < Duration::from_secs(2), "starved");
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        for reader in futures_util::future::join_all(readers).await {
            reader.unwrap();
        }
        assert_eq!(answered.load(Ordering::Relaxed), 64 * 50);
    }
}
