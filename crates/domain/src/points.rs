//! Points (잔액): the wallet balance, charges and their history.
//!
//! Money is integer KRW. A charge is between 1 and [`ChargeAmount::MAX`]; a balance
//! never exceeds [`Balance::MAX`] and is never negative.

use chrono::{DateTime, Utc};

use crate::{Money, OrderId, UserId, ValidationError};

/// The amount of one charge: `1..=1_000_000` KRW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChargeAmount(i64);

impl ChargeAmount {
    pub const MAX: i64 = 1_000_000;

    /// # Errors
    /// [`ValidationError`] on `amount` when outside `1..=1_000_000`.
    pub fn new(amount: i64) -> Result<Self, ValidationError> {
        if (1..=Self::MAX).contains(&amount) {
            Ok(Self(amount))
        } else {
            Err(ValidationError::new(
                "amount",
                format!("must be between 1 and {}", Self::MAX),
            ))
        }
    }

    pub const fn get(self) -> i64 {
        self.0
    }
}

/// A wallet balance: `0..=100_000_000` KRW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Balance(i64);

impl Balance {
    pub const MAX: i64 = 100_000_000;
    pub const ZERO: Self = Self(0);

    /// Wraps a balance read back from the store (whose CHECK constraint keeps it in range).
    pub const fn from_trusted(raw: i64) -> Self {
        Self(raw)
    }

    pub const fn get(self) -> i64 {
        self.0
    }

    /// The balance after paying `amount` from it, or `None` when it does not cover it.
    pub fn less(self, amount: Money) -> Option<Self> {
        let after = self.0.checked_sub(amount.get())?;
        (after >= 0).then_some(Self(after))
    }
}

/// The decision to credit a wallet, made before any write.
///
/// Concurrent charges do not read the balance first: the store applies the credit
/// atomically *only if* the balance is still at most `ceiling`, which is exactly
/// "the balance after the charge does not exceed [`Balance::MAX`]". Every charge that
/// fits is counted, however many run at once, and none can push the balance past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Credit {
    pub user_id: UserId,
    pub amount: ChargeAmount,
    /// The highest balance the wallet may have before the credit for it to apply.
    pub ceiling: Balance,
}

impl Credit {
    pub const fn new(user_id: UserId, amount: ChargeAmount) -> Self {
        Self {
            user_id,
            amount,
            ceiling: Balance(Balance::MAX - amount.0),
        }
    }

    /// The balance after applying this credit to `current`, or why it cannot apply.
    ///
    /// # Errors
    /// [`BalanceLimitExceeded`] when the result would exceed [`Balance::MAX`].
    pub fn apply_to(&self, current: Balance) -> Result<Balance, BalanceLimitExceeded> {
        if current <= self.ceiling {
            Ok(Balance(current.0 + self.amount.0))
        } else {
            Err(BalanceLimitExceeded)
        }
    }
}

/// A charge would push the balance above [`Balance::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the balance may not exceed {} KRW", Balance::MAX)]
pub struct BalanceLimitExceeded;

/// Whether a history row records money coming in or going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    Charge,
    Use,
}

impl PointKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Charge => "CHARGE",
            Self::Use => "USE",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "CHARGE" => Some(Self::Charge),
            "USE" => Some(Self::Use),
            _ => None,
        }
    }
}

/// One row of a wallet's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointHistoryEntry {
    pub id: i64,
    pub kind: PointKind,
    pub amount: i64,
    pub balance_after: Balance,
    pub order_id: Option<OrderId>,
    pub created_at: DateTime<Utc>,
}

/// What a successful charge leaves behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub user_id: UserId,
    pub balance: Balance,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId::new(1).unwrap()
    }

    #[test]
    fn charge_amounts_are_between_one_and_a_million() {
        assert!(ChargeAmount::new(1).is_ok());
        assert!(ChargeAmount::new(1_000_000).is_ok());
        for bad in [0, -1, 1_000_001, i64::MIN, i64::MAX] {
            assert_eq!(ChargeAmount::new(bad).unwrap_err().field, "amount", "{bad}");
        }
    }

    #[test]
    fn a_credit_applies_up_to_exactly_the_cap() {
        let credit = Credit::new(user(), ChargeAmount::new(1_000).unwrap());
        assert_eq!(credit.ceiling.get(), 99_999_000);
        assert_eq!(
            credit.apply_to(Balance::from_trusted(99_999_000)),
            Ok(Balance::from_trusted(Balance::MAX))
        );
        assert_eq!(
            credit.apply_to(Balance::from_trusted(99_999_001)),
            Err(BalanceLimitExceeded)
        );
        assert_eq!(
            credit.apply_to(Balance::ZERO),
            Ok(Balance::from_trusted(1_000))
        );
    }

    #[test]
    fn point_kinds_round_trip_through_their_names() {
        for kind in [PointKind::Charge, PointKind::Use] {
            assert_eq!(PointKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(PointKind::parse("REFUND"), None);
    }
}
