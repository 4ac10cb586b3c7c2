//! The request batcher: issues that arrive while earlier ones are being written are
//! grouped per coupon and written in one transaction each (see [`issue_group`]).
//!
//! Grouping only changes how many issues share a commit; every guarantee is still the
//! database's (unique constraint, guarded claims, `CHECK (remaining >= 0)`), so any
//! number of instances may run, each with its own batcher. A group of one is written as
//! a lone issue ([`issue_alone`]). A group that fails as a whole (say one issue's
//! idempotency lease was taken over) is retried one issue at a time, so each gets its
//! own outcome, but only until a deadline: the issues not yet tried by then are answered
//! [`IssueError::Overloaded`] without being written.
//!
//! The queue of issues waiting for a group is bounded ([`IssueBatcherLimits::queue`]):
//! once it is full, an issue is refused at once with [`IssueError::Overloaded`] and
//! nothing is written, instead of the queue growing without limit under overload.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use domain::coupon::UserCoupon;
use domain::ports::IssueError;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::issue::{Outcome, Request, issue_alone, issue_group};
use crate::pool::{PgPool, run};

/// The most issues written in one transaction.
const MAX_GROUP: usize = 128;

/// Groups written at once; while all are busy, new issues queue and form larger groups.
/// Two: with eight, groups stayed small (about six issues a
/// transaction) and the hot coupon ran at 8,500 issues/s where two gave 15,300 and one
/// 14,400 (docs/benchmarks.md).
const GROUPS_IN_FLIGHT: u32 = 2;

/// How much an [`IssueBatcher`] takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueBatcherLimits {
    /// The most issues waiting for a group (while every group slot is busy); one more
    /// is refused with [`IssueError::Overloaded`]. At least 1.
    pub queue: usize,
    /// How long the members of a group that failed as a whole are retried one per
    /// transaction; a member not started by then is answered
    /// [`IssueError::Overloaded`] (one already started finishes, within the session's
    /// statement and lock timeouts).
    pub retry_deadline: Duration,
}

impl Default for IssueBatcherLimits {
    fn default() -> Self {
        Self {
            queue: 1_024,
            retry_deadline: Duration::from_secs(2),
        }
    }
}

/// Why an issue was not taken by the batcher.
pub(super) enum Refused {
    /// The batcher has stopped: the issue is handed back to be written alone.
    Stopped(Box<Pending>),
    /// The queue is full.
    Full,
}

/// One issue waiting for its group.
pub(super) struct Pending {
    pub(super) request: Request,
    pub(super) reply: oneshot::Sender<Result<UserCoupon, IssueError>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("issue", &self.request.0)
            .finish_non_exhaustive()
    }
}

/// Groups concurrent issues of one coupon into one transaction. Started once per
/// instance (by `bootstrap`) and handed to
/// [`PgCouponStore::grouped`](super::PgCouponStore::grouped); cloning shares it.
#[derive(Debug, Clone)]
pub struct IssueBatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    queue: mpsc::Sender<Pending>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl IssueBatcher {
    /// Starts the grouping task on the current Tokio runtime, with the default
    /// [`IssueBatcherLimits`]; it writes through `pool`.
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub fn start(pool: PgPool) -> Self {
        Self::start_with(pool, IssueBatcherLimits::default())
    }

    /// [`Self::start`] with `limits` (a queue of 0 is taken as 1).
    ///
    /// # Panics
    /// When called outside a Tokio runtime.
    pub fn start_with(pool: PgPool, limits: IssueBatcherLimits) -> Self {
        let (queue, queued) = mpsc::channel(limits.queue.max(1));
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(group_issues(pool, queued, stopping, limits.retry_deadline));
        Self {
            inner: Arc::new(Inner {
                queue,
                stop,
                task: Mutex::new(Some(task)),
            }),
        }
    }

    /// Stops grouping and waits until every issue handed over so far has its answer:
    /// the queue is closed, what was queued is still written, and the groups in flight
    /// finish. Issues that come later are written one per transaction by the store.
    /// Stopping twice is harmless.
    pub async fn stop(&self) {
        self.inner.stop.send_replace(true);
        let task = self.inner.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task
            && let Err(err) = task.await
        {
            tracing::error!(error = %err, "the coupon issue batcher failed");
        }
    }

    /// Hands `pending` to the grouping task without waiting: refused when the queue is
    /// full (`pending` is dropped, nothing was written), given back once the batcher
    /// stopped.
    pub(super) fn submit(&self, pending: Pending) -> Result<(), Refused> {
        self.inner.queue.try_send(pending).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => Refused::Full,
            mpsc::error::TrySendError::Closed(pending) => Refused::Stopped(Box::new(pending)),
        })
    }
}

/// Once a slot is free, takes queued issues, as many as are waiting (up to
/// [`MAX_GROUP`]), and writes them per coupon; while every slot is busy, issues wait in
/// the bounded queue. On stop, it closes the queue, writes what was queued and waits
/// for the groups in flight.
async fn group_issues(
    pool: PgPool,
    mut queue: mpsc::Receiver<Pending>,
    mut stopping: watch::Receiver<bool>,
    retry_deadline: Duration,
) {
    let slots = Arc::new(Semaphore::new(GROUPS_IN_FLIGHT as usize));
    loop {
        // The slot first: nothing is taken off the queue to wait aside, so the queue's
        // bound is the number of issues waiting.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let next = tokio::select! {
            biased;
            () = until_stopped(&mut stopping) => {
                queue.close();
                queue.recv().await
            }
            next = queue.recv() => next,
        };
        let Some(first) = next else {
            break;
        };
        let mut taken = vec![first];
        while taken.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => taken.push(next),
                Err(_) => break,
            }
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let mut by_coupon: Vec<Vec<Pending>> = Vec::new();
            for pending in taken {
                match by_coupon.iter_mut().find(|g| {
                    g.first()
                        .is_some_and(|p| p.request.0.coupon_id == pending.request.0.coupon_id)
                }) {
                    Some(group) => group.push(pending),
                    None => by_coupon.push(vec![pending]),
                }
            }
            for group in by_coupon {
                write_group(&pool, group, retry_deadline).await;
            }
            drop(slot);
        });
    }
    // Every group in flight is done once all of its slots are free again.
    drop(slots.acquire_many(GROUPS_IN_FLIGHT).await);
}

/// Resolves once the batcher is told to stop, or is gone (its sender dropped).
async fn until_stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Writes one coupon's group and answers each issue; falls back to one issue per
/// transaction when the group fails as a whole, for at most `retry_deadline`.
pub(super) async fn write_group(pool: &PgPool, group: Vec<Pending>, retry_deadline: Duration) {
    if group.len() == 1 {
        for Pending {
            request: (issue, completion),
            reply,
        } in group
        {
            let _ = reply.send(issue_alone(pool, issue, completion).await);
        }
        return;
    }
    let (requests, replies): (Vec<_>, Vec<_>) =
        group.into_iter().map(|p| (p.request, p.reply)).unzip();
    let result = run(pool, move |conn| {
        let outcome = crate::retry::transaction(conn, |conn| issue_group(conn, &requests));
        Ok::<_, anyhow::Error>((outcome, requests))
    })
    .instrument(tracing::info_span!(
        "pg.coupons.issue_group",
        size = replies.len()
    ))
    .await;
    match result {
        Err(err) => {
            // No connection: every issue in the group fails the same way.
            let unavailable = domain::error::is_unavailable(&err);
            for reply in replies {
                let cause = if unavailable {
                    anyhow::Error::new(domain::StoreUnavailable).context(format!("{err:#}"))
                } else {
                    anyhow::anyhow!("{err:#}")
                };
                let _ = reply.send(Err(IssueError::Unknown(cause)));
            }
        }
        Ok((Ok(outcomes), requests)) => {
            let mut again = Vec::new();
            for ((outcome, reply), request) in outcomes.into_iter().zip(replies).zip(requests) {
                match outcome {
                    Outcome::Done(result) => {
                        let _ = reply.send(result);
                    }
                    Outcome::Retry => again.push((request, reply)),
                }
            }
            write_one_by_one(pool, again, Instant::now() + retry_deadline).await;
        }
        Ok((Err(err), requests)) => {
            tracing::warn!(
                error = format!("{:#}", err.into_domain()),
                size = requests.len(),
                "a coupon issue group failed; retrying its issues one by one"
            );
            let issues = requests.into_iter().zip(replies).collect();
            write_one_by_one(pool, issues, Instant::now() + retry_deadline).await;
        }
    }
}

/// Writes each issue in a transaction of its own, in order, starting none at or after
/// `deadline`: those are answered [`IssueError::Overloaded`], unwritten.
async fn write_one_by_one(
    pool: &PgPool,
    issues: Vec<(Request, oneshot::Sender<Result<UserCoupon, IssueError>>)>,
    deadline: Instant,
) {
    let mut late = 0_usize;
    for ((issue, completion), reply) in issues {
        let outcome = if Instant::now() < deadline {
            issue_alone(pool, issue, completion).await
        } else {
            late += 1;
            Err(IssueError::Overloaded)
        };
        let _ = reply.send(outcome);
    }
    if late > 0 {
        tracing::warn!(
            issues = late,
            "coupon issues not retried before the deadline were refused as overloaded"
        );
    }
}
