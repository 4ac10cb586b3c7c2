//! The striped claim: how a campaign's remaining quantity is split over rows, and how
//! units are taken from them without queueing every claim on one row lock.
//!
//! A campaign's remaining quantity is split over up to [`STRIPES`] rows of
//! `coupon_stock_stripes`. A claim takes units from the first stripe with units left
//! that no other transaction holds (`FOR UPDATE SKIP LOCKED`), so concurrent claims on
//! one hot coupon touch different rows and commit in parallel. Only when every stripe
//! with units left is held does a claim wait, on one of them, and re-check it under the
//! lock. The remaining quantity is the sum over the stripes, read without locks. Units
//! never come back to a stripe, so a campaign seen with none left is sold out for good.

use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::schema::coupon_stock_stripes as stripes;
use crate::statement::statement;

/// The most stripes a campaign's quantity is split over.
pub(crate) const STRIPES: i64 = 32;

/// Upper bound on claim attempts; each failed attempt means another transaction took
/// the unit it waited for, so the loop ends long before this in practice.
const MAX_CLAIM_ATTEMPTS: usize = 1_000;

/// How `total` units are spread: `min(total, STRIPES)` stripes, as even as possible.
pub(super) fn stripe_sizes(total: i64) -> Vec<i64> {
    let count = total.clamp(1, STRIPES);
    let (base, extra) = (total / count, total % count);
    (0..count).map(|i| base + i64::from(i < extra)).collect()
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = BigInt)]
    take: i64,
}

/// How a claim ended.
pub(super) struct Claim {
    pub(super) got: i64,
    /// No unit is left anywhere (not merely held by others).
    pub(super) sold_out: bool,
}

/// Takes up to `wanted` units of `coupon`'s remaining quantity inside the open
/// transaction.
///
/// It waits for a held stripe only while it holds none itself: a transaction never
/// holds one stripe while waiting for another, so claims cannot deadlock. A claim that
/// got some units and finds the rest held stops short (`sold_out` false).
pub(super) fn claim_units(conn: &mut PgConnection, coupon: i64, wanted: i64) -> QueryResult<Claim> {
    // From a stripe with units that nobody else holds: no waiting at all.
    // The stripe is chosen in a MATERIALIZED CTE, evaluated exactly once: a locking
    // `LIMIT 1` subquery in FROM may be rescanned per outer row by some plans, taking a
    // unit from every stripe it passes.
    const CLAIM_FREE: &str = "\
        WITH x AS MATERIALIZED ( \
            SELECT stripe, LEAST(remaining, $2) AS take FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 \
            ORDER BY stripe LIMIT 1 FOR UPDATE SKIP LOCKED) \
        UPDATE coupon_stock_stripes s SET remaining = s.remaining - x.take \
        FROM x WHERE s.coupon_id = $1 AND s.stripe = x.stripe \
        RETURNING x.take";
    // Every stripe with units is held by a claim in flight, which may commit or roll
    // back: wait for one, then re-check its units under the lock, one unit at a time.
    const CLAIM_WAITING: &str = "\
        UPDATE coupon_stock_stripes SET remaining = remaining - 1 \
        WHERE coupon_id = $1 AND remaining > 0 AND stripe = ( \
            SELECT stripe FROM coupon_stock_stripes \
            WHERE coupon_id = $1 AND remaining > 0 ORDER BY stripe LIMIT 1) \
        RETURNING 1::BIGINT AS take";
    let mut got = 0;
    for _ in 0..MAX_CLAIM_ATTEMPTS {
        if got == wanted {
            return Ok(Claim {
                got,
                sold_out: false,
            });
        }
        for sql in [CLAIM_FREE, CLAIM_WAITING] {
            if sql == CLAIM_WAITING && got > 0 {
                return Ok(Claim {
                    got,
                    sold_out: false,
                });
            }
            let taken = statement(sql)
                .bind::<BigInt, _>(coupon)
                .bind::<BigInt, _>(wanted - got)
                .get_results::<Taken>(conn)?;
            if let Some(t) = taken.first() {
                got += t.take;
                break;
            }
            let left: bool = diesel::select(exists(
                stripes::table
                    .filter(stripes::coupon_id.eq(coupon))
                    .filter(stripes::remaining.gt(0)),
            ))
            .get_result(conn)?;
            if !left {
                return Ok(Claim {
                    got,
                    sold_out: true,
                });
            }
        }
    }
    Err(diesel::result::Error::QueryBuilderError(
        "could not claim coupon units: contention did not settle".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_spread_evenly_over_at_most_32_stripes() {
        assert_eq!(stripe_sizes(1), vec![1]);
        assert_eq!(stripe_sizes(3), vec![1, 1, 1]);
        let big = stripe_sizes(100);
        assert_eq!(big.len(), 32);
        assert_eq!(big.iter().sum::<i64>(), 100);
        assert!(big.iter().all(|n| *n == 3 || *n == 4));
    }

    proptest::proptest! {
        #[test]
        fn stripes_always_sum_to_the_total_and_none_is_empty(total in 1..=10_000_000_i64) {
            let sizes = stripe_sizes(total);
            proptest::prop_assert_eq!(sizes.len() as i64, total.min(STRIPES));
            proptest::prop_assert_eq!(sizes.iter().sum::<i64>(), total);
            let (min, max) = (sizes.iter().min().copied(), sizes.iter().max().copied());
            proptest::prop_assert!(min >= Some(1));
            proptest::prop_assert!(max.zip(min).is_some_and(|(max, min)| max - min <= 1));
        }
    }
}
