//! Best sellers (상위 상품): quantities of PAID orders per business day of payment.

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::ProductId;
use crate::product::{Price, ProductName, Stock};

/// The business days counted: the last [`SalesWindow::DAYS`] including today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesWindow {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl SalesWindow {
    pub const DAYS: u64 = 3;
    /// How many products the ranking shows.
    pub const TOP: i64 = 5;

    /// The window ending on business day `today`.
    pub fn ending(today: NaiveDate) -> Self {
        Self {
            from: today
                .checked_sub_days(Days::new(Self::DAYS - 1))
                .unwrap_or(today),
            to: today,
        }
    }
}

/// One ranked product. Ranking: quantity sold descending, ties by product id ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestSeller {
    pub product_id: ProductId,
    pub name: ProductName,
    pub price: Price,
    pub stock: Stock,
    pub sales_quantity: i64,
}

/// The ranking as served, with when it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BestSellers {
    pub window: SalesWindow,
    /// Best first; `rank` is the position + 1.
    pub items: Vec<BestSeller>,
    pub refreshed_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_three_days_including_today() {
        let today = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let w = SalesWindow::ending(today);
        assert_eq!(w.from, NaiveDate::from_ymd_opt(2026, 2, 27).unwrap());
        assert_eq!(w.to, today);
    }
}
