//! Properties of the domain's arithmetic and partitions, over generated inputs.

use std::collections::BTreeMap;

use domain::ProductId;
use domain::coupon::Discount;
use domain::order::{OrderItems, OrderQuantity};
use proptest::prelude::*;

proptest! {
    /// FIXED takes its value but never more than the total.
    #[test]
    fn a_fixed_discount_is_its_value_capped_at_the_total(
        value in 1..=Discount::MAX_FIXED,
        total in 0..=i64::MAX,
    ) {
        let off = Discount::Fixed(value).amount_off(total);
        prop_assert_eq!(off, value.min(total));
        prop_assert!((0..=total).contains(&off));
    }

    /// RATE takes `floor(total × rate / 100)`, exactly, at any size of total.
    #[test]
    fn a_rate_discount_is_the_floor_of_its_share(rate in 1..=100_i64, total in 0..=i64::MAX) {
        let off = Discount::Rate(rate).amount_off(total);
        prop_assert!((0..=total).contains(&off));
        let share = i128::from(total) * i128::from(rate);
        let off = i128::from(off);
        prop_assert!(off * 100 <= share && share < (off + 1) * 100);
    }

    /// Nothing is taken off a total that is not positive.
    #[test]
    fn nothing_comes_off_a_non_positive_total(
        value in 1..=100_i64,
        total in i64::MIN..=0,
        fixed in any::<bool>(),
    ) {
        let discount = if fixed { Discount::Fixed(value) } else { Discount::Rate(value) };
        prop_assert_eq!(discount.amount_off(total), 0);
    }

    /// Lines of one product merge into one, in ascending product order; the items are
    /// refused exactly when there are no lines, more than 50, or a merged quantity
    /// passes 1000.
    #[test]
    fn order_items_merge_by_product_within_the_limits(
        lines in proptest::collection::vec(
            (1..=8_i64, prop_oneof![1..=40_i64, 1..=OrderQuantity::MAX]),
            0..=60,
        ),
    ) {
        let mut expected: BTreeMap<i64, i64> = BTreeMap::new();
        for (product, quantity) in &lines {
            *expected.entry(*product).or_default() += quantity;
        }
        let typed = lines
            .iter()
            .map(|(p, q)| (ProductId::new(*p).unwrap(), OrderQuantity::new(*q).unwrap()))
            .collect();
        let acceptable = (1..=OrderItems::MAX_LINES).contains(&lines.len())
            && expected.values().all(|q| *q <= OrderQuantity::MAX);
        match OrderItems::new(typed) {
            Ok(items) => {
                prop_assert!(acceptable);
                let merged: Vec<(i64, i64)> =
                    items.lines().iter().map(|(p, q)| (p.get(), q.get())).collect();
                prop_assert_eq!(merged, expected.into_iter().collect::<Vec<_>>());
            }
            Err(err) => {
                prop_assert!(!acceptable);
                prop_assert_eq!(err.field, "items");
            }
        }
    }
}
