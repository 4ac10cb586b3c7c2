//! Ports: the contracts the application needs from the outside world.
//!
//! Each trait is named by its role; adapters are named by technology
//! (`PgPointStore`, ...). Every fallible method documents what it MUST return when.
//! Atomic business operations are one method each, which the adapter runs in one
//! transaction, re-checking the domain's decision with guarded writes.
//!
//! The operations an `Idempotency-Key` may guard ([`PointStore::credit`],
//! [`CouponStore::issue`], [`OrderStore::place`], [`OrderStore::pay`]) take an
//! `Option<`[`Completion`]`>`: the adapter stores the key's response in the same
//! transaction (or statement) as the effect, only while the request still holds the key.
//! The response commits with the effect or not at all, and the adapter
//! [keeps](Completion::keep) the bytes it stored, which are what the first call answers,
//! so a replay returns exactly those bytes: never
//! a stored answer for an effect that rolled back, never an effect without its answer
//! (which a retry would repeat). Storing the response in a second call, after the port
//! returned, would leave a crash between the two commits room to do just that. A refusal
//! changes nothing, so its response is stored afterwards ([`IdempotencyStore::complete`]).
//!
//! With the `mock` feature, mockall generates `Mock<Trait>` for each of them.

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::coupon::{Coupon, CouponIssue, NewCoupon, UserCoupon};
use crate::idempotency::{
    Completion, Fingerprint, IdempotencyRecord, IdempotencyScope, LeaseToken, StoredResponse,
};
use crate::identity::{InvalidToken, Principal};
use crate::order::{
    CancelRefusal, Order, OrderPayment, OrderPlacement, PayRefusal, Payment, PaymentDenied,
    PlaceRefusal,
};
use crate::outbox::{OutboxCounts, OutboxEvent};
use crate::page::{KeysetPage, KeysetRequest};
use crate::points::{Balance, Charged, Credit, PointHistoryEntry};
use crate::product::{NewProduct, Product, ProductPatch, Restock};
use crate::sales::{BestSeller, SalesWindow};
use crate::user::{ForUser, Registration, Subject, User};
use crate::{CouponId, OrderId, Page, PageRequest, ProductId, UserId};

/// The time now. A port so tests can fix it.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock, at microsecond precision: the precision PostgreSQL stores, so a
/// timestamp in a response is the same as when it is read back.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        Utc::now().trunc_subsecs(6)
    }
}

/// Whether the backing services answer, for the readiness probe.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// True when the store answers a trivial query now. Never fails: any error is `false`.
    async fn is_ready(&self) -> bool;
}

/// A part of the server that works beside the requests (the outbox listener, the identity
/// provider's keys). Its state shows in the readiness detail; the database alone decides
/// readiness.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait ComponentStatus: Send + Sync {
    /// Its name in the readiness detail, e.g. `outboxListener`.
    fn name(&self) -> &'static str;

    /// `Ok` while it works; otherwise a short reason fit for an unauthenticated probe
    /// (no host, user or URL).
    ///
    /// # Errors
    /// The reason it does not work now.
    fn status(&self) -> Result<(), String>;
}

/// The identity provider's side of end-user authentication: turns a bearer token into the
/// principal it names. Synchronous: a check is CPU work on keys already held (fetching them
/// is the adapter's background business), and must never wait on the request path.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait TokenVerifier: Send + Sync {
    /// The principal `token` names.
    ///
    /// # Errors
    /// [`InvalidToken`] for any token that does not pass every check.
    fn verify(&self, token: &str) -> Result<Principal, InvalidToken>;
}

/// Users.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Creates a user, and their wallet with a zero balance, created at `now`.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn create(&self, now: DateTime<Utc>) -> anyhow::Result<User>;

    /// The user with `id`, or `None` when there is none.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn find(&self, id: UserId) -> anyhow::Result<Option<User>>;

    /// The user of `subject`: created at `now` with an empty wallet, together with the
    /// mapping, when the subject is new ([`Registration::Created`]); else the one the
    /// subject already has ([`Registration::Existing`]). A subject never gets two users,
    /// however many instances register it at once, and a registration that loses such a
    /// race leaves no user behind.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn for_subject(
        &self,
        subject: &Subject,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(User, Registration)>;

    /// The user `subject` maps to, or `None` when it has not been registered.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn user_for_subject(&self, subject: &Subject) -> anyhow::Result<Option<UserId>>;

    /// Gives the mappings made before subjects were keyed by issuer the issuer `issuer`
    /// (the one configured now); returns how many there were. Run at start-up, before
    /// any request, so that those users keep their wallets.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn adopt_unkeyed_subjects(&self, issuer: &str) -> anyhow::Result<u64>;
}

/// Why a credit was not applied.
#[derive(Debug, thiserror::Error)]
pub enum CreditError {
    #[error("no such user")]
    UserNotFound,
    /// The balance was above the credit's ceiling when the credit was applied.
    #[error(transparent)]
    LimitExceeded(#[from] crate::points::BalanceLimitExceeded),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Point wallets and their history.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PointStore: Send + Sync {
    /// The balance of `user`'s wallet, or `None` when the user does not exist.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn balance(&self, user: UserId) -> anyhow::Result<Option<Balance>>;

    /// One page of `user`'s history, newest first, with the total row count.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn history(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> anyhow::Result<ForUser<Page<PointHistoryEntry>>>;

    /// Atomically adds `credit.amount` to the wallet *if* its balance is at most
    /// `credit.ceiling`, and writes a CHARGE history row with the balance after, at `now`.
    /// With a `completion`, the rendered response is stored as the idempotency key's
    /// response in the same transaction.
    ///
    /// # Errors
    /// - [`CreditError::UserNotFound`] when the user has no wallet; nothing is written.
    /// - [`CreditError::LimitExceeded`] when the balance is above the ceiling; nothing is written.
    /// - [`CreditError::Unknown`] when the store fails or the completion's lease was lost;
    ///   nothing is written.
    async fn credit(
        &self,
        credit: Credit,
        now: DateTime<Utc>,
        completion: Option<Completion<Charged>>,
    ) -> Result<Charged, CreditError>;
}

/// The outcome of trying to claim a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key was free and is now held under this token.
    Acquired(LeaseToken),
    /// The key is already recorded.
    Existing(IdempotencyRecord),
}

/// Idempotency-Key records. Correct across instances: every change is a single
/// conditional statement.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Records `scope` as held until `locked_until` for a body with `fingerprint`, unless
    /// it is already recorded, in which case the existing record is returned unchanged.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn claim(
        &self,
        scope: &IdempotencyScope,
        fingerprint: &Fingerprint,
        locked_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim>;

    /// Takes the key over from a dead holder: succeeds only while the record is still
    /// unfinished and held under `stale`, then holds it under a new token until `locked_until`.
    /// Returns `None` when someone else got there first.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn take_over(
        &self,
        scope: &IdempotencyScope,
        stale: LeaseToken,
        locked_until: DateTime<Utc>,
    ) -> anyhow::Result<Option<LeaseToken>>;

    /// Stores `response` for a key held under `token`. Returns false when the key is no
    /// longer held under `token`.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn complete(
        &self,
        scope: &IdempotencyScope,
        token: LeaseToken,
        response: &StoredResponse,
    ) -> anyhow::Result<bool>;

    /// Forgets an unfinished key held under `token`, so a retry runs anew.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn release(&self, scope: &IdempotencyScope, token: LeaseToken) -> anyhow::Result<()>;

    /// Deletes keys first used before `cutoff`, in bounded batches, one instance at a
    /// time (an instance finding another one purging stops); returns how many it deleted.
    ///
    /// # Errors
    /// Only when the store fails; batches already deleted stay deleted.
    async fn purge_older_than(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;
}

/// Why a restock was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RestockError {
    #[error("no such product")]
    ProductNotFound,
    /// The stock was above the restock's ceiling.
    #[error("the stock may not exceed {}", crate::product::Stock::MAX)]
    StockLimitExceeded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// The product catalogue.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ProductRepository: Send + Sync {
    /// Stores a new product.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn create(&self, product: NewProduct, now: DateTime<Utc>) -> anyhow::Result<Product>;

    /// The product with `id` and its stock now, or `None`.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn find(&self, id: ProductId) -> anyhow::Result<Option<Product>>;

    /// One page of products ordered by id, with the total count (kept by the store,
    /// never counted per request).
    ///
    /// # Errors
    /// Only when the store fails.
    async fn list(&self, page: PageRequest) -> anyhow::Result<Page<Product>>;

    /// Up to `request.size()` products with ids greater than `request.after()`, by id,
    /// with the total count and the cursor of the next page (built with
    /// [`KeysetPage::from_fetched`](crate::page::KeysetPage::from_fetched)).
    ///
    /// # Errors
    /// Only when the store fails.
    async fn list_after(&self, request: KeysetRequest) -> anyhow::Result<KeysetPage<Product>>;

    /// Applies `patch` (never touching stock); `None` when there is no such product.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn update(
        &self,
        id: ProductId,
        patch: ProductPatch,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<Product>>;

    /// Atomically adds `restock.quantity` to the stock *if* it is at most
    /// `restock.ceiling` (an increment, never a read-modify-write, so concurrent orders
    /// and restocks all count).
    ///
    /// # Errors
    /// [`RestockError::ProductNotFound`], [`RestockError::StockLimitExceeded`]; nothing is written.
    async fn restock(&self, restock: Restock, now: DateTime<Utc>) -> Result<Product, RestockError>;
}

/// Why an issue was not applied.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("no such user")]
    UserNotFound,
    #[error("the user already holds this coupon")]
    AlreadyIssued,
    #[error("the coupon is sold out")]
    SoldOut,
    /// Too many issues are already waiting to be written; this one was not attempted
    /// and nothing changed. Worth retrying shortly.
    #[error("too many coupon issues are waiting; retry shortly")]
    Overloaded,
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Coupon campaigns and the copies issued to users.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait CouponStore: Send + Sync {
    /// Stores a new campaign with all of its quantity remaining.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn create(&self, coupon: NewCoupon, now: DateTime<Utc>) -> anyhow::Result<Coupon>;

    /// The campaign with `id` and its exact remaining quantity now, or `None`.
    /// Takes no lock and writes nothing.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn find(&self, id: CouponId) -> anyhow::Result<Option<Coupon>>;

    /// The campaign's terms for deciding an issue, possibly from a cache: name,
    /// discount and window exactly (they never change), and a `remaining_quantity` that
    /// may be stale-high but is 0 once the campaign is sold out (units never come back).
    /// A pre-check on it never refuses wrongly; the claim in [`Self::issue`] is exact.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn terms(&self, id: CouponId) -> anyhow::Result<Option<Coupon>>;

    /// In one transaction: records the user's copy (at most one per user and coupon) and
    /// claims one unit of the remaining quantity, never taking it below zero. With a
    /// `completion`, the rendered response is stored in the same transaction.
    ///
    /// Implementations may group concurrent issues of one coupon into one transaction;
    /// each issue still gets its own outcome, in arrival order within a group.
    ///
    /// # Errors
    /// - [`IssueError::UserNotFound`] when there is no such user; nothing changes.
    /// - [`IssueError::AlreadyIssued`] when the user already holds a copy; nothing changes.
    /// - [`IssueError::SoldOut`] when no unit remains; nothing changes.
    /// - [`IssueError::Overloaded`] when too many issues are waiting to be written, or
    ///   could not be reached in time after their group failed; nothing changes.
    async fn issue(
        &self,
        issue: CouponIssue,
        completion: Option<Completion<UserCoupon>>,
    ) -> Result<UserCoupon, IssueError>;

    /// Whether `user` holds a copy of `coupon`, or [`ForUser::UnknownUser`], in one read:
    /// what an issue refused before any write needs to pick its error.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn holds(&self, user: UserId, coupon: CouponId) -> anyhow::Result<ForUser<bool>>;

    /// Every copy `user` holds, oldest first, or [`ForUser::UnknownUser`] (told apart in
    /// the same read).
    ///
    /// # Errors
    /// Only when the store fails.
    async fn of_user(&self, user: UserId) -> anyhow::Result<ForUser<Vec<UserCoupon>>>;
}

/// Why an order was not placed.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Refused(#[from] PlaceRefusal),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Why a payment was not made.
#[derive(Debug, thiserror::Error)]
pub enum PayError {
    #[error("the balance is lower than the amount to pay")]
    InsufficientBalance,
    #[error(transparent)]
    Refused(#[from] PayRefusal),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

impl From<PaymentDenied> for PayError {
    fn from(denied: PaymentDenied) -> Self {
        match denied {
            PaymentDenied::Refused(refusal) => Self::Refused(refusal),
            PaymentDenied::InsufficientBalance => Self::InsufficientBalance,
        }
    }
}

/// Why an order was not cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error(transparent)]
    Refused(#[from] CancelRefusal),
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// Orders, their stock and coupon effects, and their payment.
///
/// Deadlines are the database's: an order's `created_at`, `expires_at` and `paid_at`,
/// and every comparison with them, use the database's clock, so an instance whose
/// clock is skewed, or a request slowed between its decision and its commit, can never
/// pay an order past its `expires_at`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// In one transaction: takes every line's stock (all or none, never below zero;
    /// rows locked in product order) and snapshots each product's name and price in
    /// the same statement, prices the order with [`OrderPlan::price`], marks the
    /// coupon USED (only if it is the user's, AVAILABLE and unexpired), and stores the
    /// NOT_PAID order, payable for `order.payment_timeout`. With a `completion`, the
    /// rendered response is stored in the same transaction.
    ///
    /// # Errors
    /// [`PlaceError::Refused`] with the first rule broken in API.md's order (see
    /// [`PlaceFindings::refusal`]); nothing is written.
    ///
    /// [`OrderPlan::price`]: crate::order::OrderPlan::price
    /// [`PlaceFindings::refusal`]: crate::order::PlaceFindings::refusal
    async fn place(
        &self,
        order: OrderPlacement,
        completion: Option<Completion<Order>>,
    ) -> Result<Order, PlaceError>;

    /// `user`'s order `id` with its lines: `Found(None)` when there is no such order or
    /// it is another user's.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn find(&self, user: UserId, id: OrderId) -> anyhow::Result<ForUser<Option<Order>>>;

    /// One page of `user`'s orders, newest first.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn of_user(
        &self,
        user: UserId,
        page: PageRequest,
    ) -> anyhow::Result<ForUser<Page<Order>>>;

    /// In one transaction, only while the order is `user`'s and NOT_PAID: CANCELLED,
    /// stock and coupon restored exactly once.
    ///
    /// # Errors
    /// [`CancelError::Refused`] (see [`OrderFindings::cancel_refusal`]); nothing changes.
    ///
    /// [`OrderFindings::cancel_refusal`]: crate::order::OrderFindings::cancel_refusal
    async fn cancel(&self, user: UserId, id: OrderId) -> Result<Order, CancelError>;

    /// In one transaction, only while the order is the user's, NOT_PAID and before its
    /// `expires_at` by the database's clock, and only if the balance covers its
    /// `pay_amount`: balance debited, USE history row, order PAID, and the
    /// [`OrderPaid`](crate::outbox::OrderPaid) event into the outbox. With a
    /// `completion`, the rendered response is stored in the same transaction.
    ///
    /// # Errors
    /// [`PayError::Refused`] when the order is not payable (see
    /// [`OrderFindings::payable`]), [`PayError::InsufficientBalance`]; nothing changes.
    ///
    /// [`OrderFindings::payable`]: crate::order::OrderFindings::payable
    async fn pay(
        &self,
        pay: OrderPayment,
        completion: Option<Completion<Payment>>,
    ) -> Result<Payment, PayError>;

    /// In one transaction, up to `limit` NOT_PAID orders whose `expires_at` has passed
    /// by the database's clock become EXPIRED, their stock and coupons restored exactly
    /// once. Orders another transaction holds are skipped (`SKIP LOCKED`), so the job
    /// may run in every instance at once. Returns how many expired.
    ///
    /// # Errors
    /// Only when the store fails; then nothing changes.
    async fn expire_due(&self, limit: i64) -> anyhow::Result<u64>;

    /// The earliest `expires_at` of a NOT_PAID order, if any: when the next expiry is due.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn next_expiry(&self) -> anyhow::Result<Option<DateTime<Utc>>>;
}

/// Sales statistics: the daily per-product roll-up and the ranking read from it.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SalesStore: Send + Sync {
    /// Today's date in the business `timezone` (an IANA name).
    ///
    /// # Errors
    /// When the store fails or does not know `timezone`.
    async fn business_today(&self, timezone: String) -> anyhow::Result<NaiveDate>;

    /// Recomputes the daily per-product quantities of PAID orders paid on business days
    /// `from` onwards (in `timezone`), replacing what was there: running it again never
    /// double counts.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn roll_up(
        &self,
        timezone: String,
        from: NaiveDate,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()>;

    /// Up to `limit` products by quantity sold on business days `window.from..=window.to`,
    /// most first, ties by product id; products that sold nothing are left out.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn top(&self, window: SalesWindow, limit: i64) -> anyhow::Result<Vec<BestSeller>>;
}

/// The transactional outbox (events are written by the stores' own transactions).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Claims up to `limit` undelivered events due now, oldest first, for `CLAIM_LEASE`:
    /// committed at once, so other relays skip them while this one delivers, and take them
    /// again if it dies. Counts the attempt. "Now" and the lease's end are the store's
    /// clock, the one every instance shares, so an instance whose own clock runs ahead
    /// never takes another's lease early.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn claim_due(&self, limit: i64) -> anyhow::Result<Vec<OutboxEvent>>;

    /// Records the delivery of the events `ids` now (the store's clock), all at once.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn mark_delivered(&self, ids: Vec<String>) -> anyhow::Result<()>;

    /// Records a failed attempt of `id`, to be tried again `after` from now (the store's
    /// clock).
    ///
    /// # Errors
    /// Only when the store fails.
    async fn reschedule(&self, id: String, after: Duration, error: String) -> anyhow::Result<()>;

    /// Delivery counts.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn counts(&self) -> anyhow::Result<OutboxCounts>;

    /// How long until the earliest undelivered event is next due (its `next_attempt_at`:
    /// a retry's time, or a claim's lease end), by the store's clock: negative when it is
    /// overdue, `None` when every event is delivered. Lets the relay sleep until then
    /// instead of polling.
    ///
    /// # Errors
    /// Only when the store fails.
    async fn next_due_in(&self) -> anyhow::Result<Option<Duration>>;

    /// Deletes events delivered before `cutoff`, in bounded batches, one instance at a
    /// time (an instance finding another one purging stops); returns how many it deleted.
    /// Undelivered events are never deleted.
    ///
    /// # Errors
    /// Only when the store fails; batches already deleted stay deleted.
    async fn purge_delivered_before(&self, cutoff: DateTime<Utc>) -> anyhow::Result<u64>;
}

/// The data platform: receives paid orders.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DataPlatform: Send + Sync {
    /// Delivers one event.
    ///
    /// # Errors
    /// When the platform did not acknowledge it (not 2xx, timeout, refused): retry later.
    async fn deliver(&self, event: &OutboxEvent) -> anyhow::Result<()>;
}

// ---------------------------------------------------------------------------------------
// Outbox wake-up

/// Tells the outbox relay that events may have been committed, so it sleeps between
/// deliveries instead of polling the outbox several times a second.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OutboxWakeup: Send + Sync {
    /// Returns when events may have been committed since the previous call returned, or
    /// when `timeout` has passed, whichever is first. A signal that arrives while nobody
    /// waits is kept for the next call. While the source of signals is unavailable,
    /// returns after a short polling period (at most `timeout`), so the relay polls until
    /// it is back. Never fails.
    async fn wait(&self, timeout: std::time::Duration);
}
