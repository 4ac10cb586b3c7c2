//! Money: amounts of Korean won, the shop's only currency.

use std::fmt;

/// An amount of KRW: a whole, non-negative number of won (the won has no minor unit).
/// Arithmetic is checked: a result below zero or past `i64::MAX` is `None`, never a
/// wrapped or negative amount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(i64);

/// An amount below zero, which no price, total or payment can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an amount of money may not be negative (got {0})")]
pub struct NegativeAmount(pub i64);

impl Money {
    pub const ZERO: Self = Self(0);

    /// # Errors
    /// [`NegativeAmount`] when `won` is below zero.
    pub const fn new(won: i64) -> Result<Self, NegativeAmount> {
        if won >= 0 {
            Ok(Self(won))
        } else {
            Err(NegativeAmount(won))
        }
    }

    /// Wraps an amount read back from the store, whose constraints keep it non-negative.
    pub const fn from_trusted(won: i64) -> Self {
        Self(won)
    }

    /// The amount in won.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` past `i64::MAX` won.
    #[must_use]
    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Self(sum)),
            None => None,
        }
    }

    /// `self − other`, or `None` when `other` is the larger (no amount is negative).
    #[must_use]
    pub const fn checked_sub(self, other: Self) -> Option<Self> {
        if other.0 > self.0 {
            None
        } else {
            Some(Self(self.0 - other.0))
        }
    }

    /// `self × times`, or `None` for a negative `times` or past `i64::MAX` won.
    #[must_use]
    pub const fn checked_mul(self, times: i64) -> Option<Self> {
        if times < 0 {
            return None;
        }
        match self.0.checked_mul(times) {
            Some(product) => Some(Self(product)),
            None => None,
        }
    }

    /// The sum of `amounts`, or `None` past `i64::MAX` won.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Self>) -> Option<Self> {
        amounts
            .into_iter()
            .try_fold(Self::ZERO, |sum, amount| sum.checked_add(amount))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} KRW", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn won(raw: i64) -> Money {
        Money::new(raw).unwrap()
    }

    #[test]
    fn an_amount_is_never_negative() {
        assert_eq!(Money::new(0), Ok(Money::ZERO));
        assert_eq!(Money::new(1_500).map(Money::get), Ok(1_500));
        assert_eq!(Money::new(-1), Err(NegativeAmount(-1)));
        assert_eq!(Money::new(i64::MIN), Err(NegativeAmount(i64::MIN)));
    }

    #[test]
    fn subtracting_more_than_there_is_is_refused_not_negative() {
        assert_eq!(won(3_000).checked_sub(won(450)), Some(won(2_550)));
        assert_eq!(won(3_000).checked_sub(won(3_000)), Some(Money::ZERO));
        assert_eq!(won(3_000).checked_sub(won(3_001)), None);
    }

    #[test]
    fn additions_and_multiplications_past_the_range_are_refused_not_wrapped() {
        assert_eq!(won(1_000).checked_add(won(2_500)), Some(won(3_500)));
        assert_eq!(won(i64::MAX).checked_add(won(1)), None);
        assert_eq!(
            won(1_000_000_000).checked_mul(1_000),
            Some(won(1_000_000_000_000))
        );
        assert_eq!(won(2).checked_mul(0), Some(Money::ZERO));
        assert_eq!(won(2).checked_mul(-1), None);
        assert_eq!(won(i64::MAX / 2 + 1).checked_mul(2), None);
    }

    #[test]
    fn a_sum_is_checked_too() {
        assert_eq!(Money::checked_sum([won(1), won(2), won(3)]), Some(won(6)));
        assert_eq!(Money::checked_sum([]), Some(Money::ZERO));
        assert_eq!(Money::checked_sum([won(i64::MAX), won(1)]), None);
    }

    #[test]
    fn an_amount_shows_its_currency() {
        assert_eq!(won(3_000).to_string(), "3000 KRW");
    }
}
