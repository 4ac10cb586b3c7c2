//! First-come-first-served coupons (선착순 쿠폰).
//!
//! A coupon campaign has a total quantity and an issuable window `[starts_at, ends_at)`.
//! Each user may hold at most one copy; a copy is usable until the campaign's `ends_at`.

use chrono::{DateTime, SubsecRound, Utc};

use crate::{CouponId, UserCouponId, UserId, ValidationError};

/// What a coupon takes off an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discount {
    /// KRW off, at most the order total.
    Fixed(i64),
    /// Percent off, `1..=100`, rounded down.
    Rate(i64),
}

impl Discount {
    pub const MAX_FIXED: i64 = 1_000_000_000;

    /// Parses a discount from its type name (`FIXED`/`RATE`) and value.
    ///
    /// # Errors
    /// [`ValidationError`] on `discountType` for an unknown type, on `discountValue` when
    /// FIXED is not in `1..=1_000_000_000` or RATE not in `1..=100`.
    pub fn new(kind: &str, value: i64) -> Result<Self, ValidationError> {
        match kind {
            "FIXED" if (1..=Self::MAX_FIXED).contains(&value) => Ok(Self::Fixed(value)),
            "FIXED" => Err(ValidationError::new(
                "discountValue",
                format!(
                    "a FIXED discount must be between 1 and {} KRW",
                    Self::MAX_FIXED
                ),
            )),
            "RATE" if (1..=100).contains(&value) => Ok(Self::Rate(value)),
            "RATE" => Err(ValidationError::new(
                "discountValue",
                "a RATE discount must be between 1 and 100 percent",
            )),
            _ => Err(ValidationError::new(
                "discountType",
                "must be FIXED or RATE",
            )),
        }
    }

    pub const fn kind(self) -> &'static str {
        match self {
            Self::Fixed(_) => "FIXED",
            Self::Rate(_) => "RATE",
        }
    }

    pub const fn value(self) -> i64 {
        match self {
            Self::Fixed(v) | Self::Rate(v) => v,
        }
    }

    /// The amount taken off `total`: FIXED `min(value, total)`, RATE `floor(total × rate / 100)`.
    pub fn amount_off(self, total: i64) -> i64 {
        let total = total.max(0);
        match self {
            Self::Fixed(value) => value.min(total),
            // i128: total × 100 cannot overflow.
            Self::Rate(rate) => {
                i64::try_from(i128::from(total) * i128::from(rate) / 100).unwrap_or(total)
            }
        }
    }
}

/// A coupon name: at most 200 characters as sent (surrounding spaces count), not blank,
/// no control characters; kept trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponName(String);

impl CouponName {
    /// # Errors
    /// [`ValidationError`] on `name` when blank, longer than 200 characters or holding a
    /// control character.
    pub fn new(raw: &str) -> Result<Self, ValidationError> {
        ValidationError::refuse_control_characters("name", raw)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() || raw.chars().count() > 200 {
            return Err(ValidationError::new(
                "name",
                "must be 1 to 200 characters, not blank",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many copies a campaign issues: `1..=10_000_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponQuantity(i64);

impl CouponQuantity {
    pub const MAX: i64 = 10_000_000;

    /// # Errors
    /// [`ValidationError`] on `totalQuantity` when not in `1..=10_000_000`.
    pub fn new(raw: i64) -> Result<Self, ValidationError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw))
        } else {
            Err(ValidationError::new(
                "totalQuantity",
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A validated new campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCoupon {
    pub name: CouponName,
    pub discount: Discount,
    pub total_quantity: CouponQuantity,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl NewCoupon {
    /// The earliest instant a window may name: 1970-01-01T00:00:00Z.
    pub const EARLIEST: DateTime<Utc> = DateTime::UNIX_EPOCH;

    /// The first instant after the latest a window may name: 10000-01-01T00:00:00Z.
    pub fn end_of_time() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(253_402_300_800, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// `starts_at` defaults to `now`. Instants are kept to the microsecond (finer digits
    /// are dropped, as a store of microseconds would), and the window is checked after
    /// that, so a window that is ordered here is ordered as stored.
    ///
    /// # Errors
    /// [`ValidationError`] on `startsAt` or `endsAt` outside the years 1970–9999, and on
    /// `endsAt` unless it is at least a microsecond after `startsAt`.
    pub fn new(
        name: CouponName,
        discount: Discount,
        total_quantity: CouponQuantity,
        starts_at: Option<DateTime<Utc>>,
        ends_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Self, ValidationError> {
        let in_range = |field, at: DateTime<Utc>| {
            if (Self::EARLIEST..Self::end_of_time()).contains(&at) {
                Ok(at.trunc_subsecs(6))
            } else {
                Err(ValidationError::new(
                    field,
                    "must be between 1970-01-01 and 9999-12-31",
                ))
            }
        };
        let starts_at = in_range("startsAt", starts_at.unwrap_or(now))?;
        let ends_at = in_range("endsAt", ends_at)?;
        if ends_at <= starts_at {
            return Err(ValidationError::new(
                "endsAt",
                "must be after startsAt (to the microsecond)",
            ));
        }
        Ok(Self {
            name,
            discount,
            total_quantity,
            starts_at,
            ends_at,
        })
    }
}

/// A campaign as stored, with its exact remaining quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub id: CouponId,
    pub name: CouponName,
    pub discount: Discount,
    pub total_quantity: i64,
    pub remaining_quantity: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Why a coupon cannot be issued right now (before any write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IssueRefusal {
    #[error("the coupon is not issuable now")]
    NotIssuable,
    #[error("the coupon is sold out")]
    SoldOut,
}

impl Coupon {
    /// Decides whether a copy may be issued at `now`: inside the window and while any
    /// remain. Passing is not a promise (others may take the last copy meanwhile); the
    /// store's guarded claim is what keeps the count exact.
    ///
    /// # Errors
    /// [`IssueRefusal::NotIssuable`] outside `[starts_at, ends_at)`, then
    /// [`IssueRefusal::SoldOut`] when none remain.
    pub fn check_issuable(&self, now: DateTime<Utc>) -> Result<(), IssueRefusal> {
        if now < self.starts_at || now >= self.ends_at {
            return Err(IssueRefusal::NotIssuable);
        }
        if self.remaining_quantity <= 0 {
            return Err(IssueRefusal::SoldOut);
        }
        Ok(())
    }

    /// The copy issued to `user` at `now`: usable until the campaign ends.
    pub fn issue_to(&self, user_id: UserId, now: DateTime<Utc>) -> CouponIssue {
        CouponIssue {
            coupon_id: self.id,
            user_id,
            name: self.name.clone(),
            discount: self.discount,
            issued_at: now,
            expires_at: self.ends_at,
        }
    }
}

/// The plan of one issue, handed to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponIssue {
    pub coupon_id: CouponId,
    pub user_id: UserId,
    /// The campaign's name and discount, copied onto the issued coupon's view.
    pub name: CouponName,
    pub discount: Discount,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl CouponIssue {
    /// The user's copy once stored under `id`: a new copy is AVAILABLE and unused.
    pub fn copy(&self, id: UserCouponId) -> UserCoupon {
        UserCoupon {
            id,
            user_id: self.user_id,
            coupon_id: self.coupon_id,
            name: self.name.clone(),
            discount: self.discount,
            state: StoredCouponState::Available,
            issued_at: self.issued_at,
            expires_at: self.expires_at,
            used_at: None,
        }
    }
}

/// The stored state of a user's copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCouponState {
    Available,
    Used,
}

impl StoredCouponState {
    /// The name stores keep it under: `AVAILABLE` or `USED`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Used => "USED",
        }
    }

    /// Reads a stored name back. Anything but `AVAILABLE` or `USED` is an error, so a
    /// corrupt or newer value is reported instead of passing for a usable copy.
    ///
    /// # Errors
    /// [`UnknownCouponState`] for any other name.
    pub fn parse(stored: &str) -> Result<Self, UnknownCouponState> {
        match stored {
            "AVAILABLE" => Ok(Self::Available),
            "USED" => Ok(Self::Used),
            other => Err(UnknownCouponState(other.to_owned())),
        }
    }
}

/// A stored coupon state that is neither `AVAILABLE` nor `USED`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown stored coupon state {0:?}")]
pub struct UnknownCouponState(pub String);

/// The state a user sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCouponStatus {
    Available,
    Used,
    Expired,
}

impl UserCouponStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Used => "USED",
            Self::Expired => "EXPIRED",
        }
    }
}

/// One copy of a coupon held by a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCoupon {
    pub id: UserCouponId,
    pub user_id: UserId,
    pub coupon_id: CouponId,
    pub name: CouponName,
    pub discount: Discount,
    pub state: StoredCouponState,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl UserCoupon {
    /// USED while an unpaid or paid order holds it (SPEC invariant 4: that is what the
    /// stored USED means, and it stays so after the campaign ends); an unused copy is
    /// EXPIRED once `expires_at` has passed, else AVAILABLE.
    pub fn status_at(&self, now: DateTime<Utc>) -> UserCouponStatus {
        match self.state {
            StoredCouponState::Used => UserCouponStatus::Used,
            StoredCouponState::Available if now >= self.expires_at => UserCouponStatus::Expired,
            StoredCouponState::Available => UserCouponStatus::Available,
        }
    }
}

impl UserCoupon {
    /// Usable on an order at `now`: AVAILABLE and before its expiry.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.status_at(now) == UserCouponStatus::Available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn coupon(remaining: i64, starts_in: i64, ends_in: i64) -> Coupon {
        let now = Utc::now();
        Coupon {
            id: CouponId::new(1).unwrap(),
            name: CouponName::new("c").unwrap(),
            discount: Discount::Fixed(100),
            total_quantity: 10,
            remaining_quantity: remaining,
            starts_at: now + Duration::seconds(starts_in),
            ends_at: now + Duration::seconds(ends_in),
        }
    }

    #[test]
    fn discounts_are_parsed_by_type_and_range() {
        assert_eq!(Discount::new("FIXED", 500), Ok(Discount::Fixed(500)));
        assert_eq!(Discount::new("RATE", 100), Ok(Discount::Rate(100)));
        assert_eq!(
            Discount::new("FIXED", 0).unwrap_err().field,
            "discountValue"
        );
        assert_eq!(
            Discount::new("RATE", 101).unwrap_err().field,
            "discountValue"
        );
        assert_eq!(Discount::new("RATE", 0).unwrap_err().field, "discountValue");
        assert_eq!(Discount::new("BOGUS", 1).unwrap_err().field, "discountType");
    }

    #[test]
    fn fixed_discounts_never_exceed_the_total_and_rates_round_down() {
        assert_eq!(Discount::Fixed(500).amount_off(3_000), 500);
        assert_eq!(Discount::Fixed(5_000).amount_off(3_000), 3_000);
        assert_eq!(Discount::Rate(15).amount_off(3_000), 450);
        assert_eq!(Discount::Rate(33).amount_off(3_000), 990);
        assert_eq!(Discount::Rate(33).amount_off(1), 0);
        assert_eq!(Discount::Rate(100).amount_off(i64::MAX), i64::MAX);
    }

    #[test]
    fn a_window_must_end_after_it_starts_and_starts_now_by_default() {
        let now = Utc::now();
        let make = |starts: Option<DateTime<Utc>>, ends| {
            NewCoupon::new(
                CouponName::new("x").unwrap(),
                Discount::Fixed(1),
                CouponQuantity::new(1).unwrap(),
                starts,
                ends,
                now,
            )
        };
        assert_eq!(
            make(None, now + Duration::hours(1)).unwrap().starts_at,
            now.trunc_subsecs(6)
        );
        assert_eq!(make(None, now).unwrap_err().field, "endsAt");
        assert!(make(Some(now), now - Duration::hours(1)).is_err());
    }

    #[test]
    fn a_window_is_ordered_at_the_stored_precision_and_within_storable_years() {
        let now = Utc::now();
        let make = |starts: DateTime<Utc>, ends: DateTime<Utc>| {
            NewCoupon::new(
                CouponName::new("x").unwrap(),
                Discount::Fixed(1),
                CouponQuantity::new(1).unwrap(),
                Some(starts),
                ends,
                now,
            )
        };
        let start = DateTime::<Utc>::from_timestamp(1_900_000_000, 100).unwrap();
        // 0.5 µs apart: ordered in nanoseconds, one and the same microsecond when stored.
        assert_eq!(
            make(start, start + Duration::nanoseconds(500))
                .unwrap_err()
                .field,
            "endsAt"
        );
        let ok = make(start, start + Duration::microseconds(1)).unwrap();
        assert_eq!(ok.starts_at.timestamp_subsec_nanos(), 0);
        assert_eq!(ok.ends_at - ok.starts_at, Duration::microseconds(1));
        let ancient = DateTime::<Utc>::MIN_UTC;
        assert_eq!(make(ancient, now).unwrap_err().field, "startsAt");
        assert_eq!(
            make(now, DateTime::<Utc>::MAX_UTC).unwrap_err().field,
            "endsAt"
        );
        assert_eq!(
            make(now, NewCoupon::end_of_time()).unwrap_err().field,
            "endsAt"
        );
        assert!(make(now, NewCoupon::end_of_time() - Duration::microseconds(1)).is_ok());
    }

    #[test]
    fn names_refuse_control_characters() {
        for bad in ["a\u{0}b", "tab\there", "esc\u{1b}", "del\u{7f}", "line\n"] {
            assert_eq!(CouponName::new(bad).unwrap_err().field, "name", "{bad:?}");
        }
        assert!(CouponName::new("Café 10% off — 가을").is_ok());
    }

    #[test]
    fn names_are_at_most_200_characters_as_sent_and_kept_trimmed() {
        assert_eq!(CouponName::new("  Flash  ").unwrap().as_str(), "Flash");
        assert!(CouponName::new(&"가".repeat(200)).is_ok());
        assert!(CouponName::new(&format!("{} ", "가".repeat(200))).is_err());
        assert!(CouponName::new(" \u{3000} ").is_err(), "blank");
    }

    #[test]
    fn issuing_needs_the_window_then_a_remaining_copy() {
        let now = Utc::now();
        assert_eq!(coupon(5, -10, 10).check_issuable(now), Ok(()));
        assert_eq!(
            coupon(5, 10, 20).check_issuable(now),
            Err(IssueRefusal::NotIssuable)
        );
        assert_eq!(
            coupon(5, -20, -10).check_issuable(now),
            Err(IssueRefusal::NotIssuable)
        );
        assert_eq!(
            coupon(0, 10, 20).check_issuable(now),
            Err(IssueRefusal::NotIssuable)
        );
        assert_eq!(
            coupon(0, -10, 10).check_issuable(now),
            Err(IssueRefusal::SoldOut)
        );
    }

    #[test]
    fn an_issued_copy_expires_with_the_campaign() {
        let c = coupon(1, -10, 10);
        let issue = c.issue_to(UserId::new(2).unwrap(), Utc::now());
        assert_eq!(issue.expires_at, c.ends_at);
    }

    #[test]
    fn stored_states_round_trip_and_unknown_names_are_errors() {
        for state in [StoredCouponState::Available, StoredCouponState::Used] {
            assert_eq!(StoredCouponState::parse(state.as_str()), Ok(state));
        }
        assert_eq!(
            StoredCouponState::parse("EXPIRED"),
            Err(UnknownCouponState("EXPIRED".to_owned()))
        );
        assert!(StoredCouponState::parse("available").is_err());
    }

    #[test]
    fn an_unused_copy_expires_and_a_used_one_stays_used() {
        let now = Utc::now();
        let copy = |state, expires_in| UserCoupon {
            id: UserCouponId::new(1).unwrap(),
            user_id: UserId::new(1).unwrap(),
            coupon_id: CouponId::new(1).unwrap(),
            name: CouponName::new("c").unwrap(),
            discount: Discount::Rate(10),
            state,
            issued_at: now,
            expires_at: now + Duration::seconds(expires_in),
            used_at: None,
        };
        assert_eq!(
            copy(StoredCouponState::Available, 5).status_at(now),
            UserCouponStatus::Available
        );
        assert_eq!(
            copy(StoredCouponState::Used, 5).status_at(now),
            UserCouponStatus::Used
        );
        assert_eq!(
            copy(StoredCouponState::Available, 0).status_at(now),
            UserCouponStatus::Expired
        );
        assert_eq!(
            copy(StoredCouponState::Used, -5).status_at(now),
            UserCouponStatus::Used,
            "an order still holds it"
        );
    }

    #[test]
    fn an_issued_copy_is_available_unused_and_carries_the_campaign_terms() {
        let now = Utc::now();
        let issue = CouponIssue {
            coupon_id: CouponId::new(4).unwrap(),
            user_id: UserId::new(2).unwrap(),
            name: CouponName::new("c").unwrap(),
            discount: Discount::Fixed(100),
            issued_at: now,
            expires_at: now + Duration::days(1),
        };
        let copy = issue.copy(UserCouponId::new(9).unwrap());
        assert_eq!(
            (copy.id.get(), copy.state, copy.used_at, copy.discount),
            (9, StoredCouponState::Available, None, Discount::Fixed(100))
        );
        assert_eq!(copy.status_at(now), UserCouponStatus::Available);
    }
}
