//! The terms cache: campaigns this instance has read, so that refusals (a sold-out
//! campaign above all) cost no round trip.
//!
//! Only a shortcut: a campaign's name, discount and window never change, and a remaining
//! quantity of 0 is final (units never come back). A cached remaining quantity may be
//! stale-high; the claim in the database is what decides, so correctness never depends
//! on this cache and every instance may keep its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::CouponId;
use domain::coupon::Coupon;

/// Campaigns whose terms are kept in memory before the cache starts afresh.
const CAPACITY: usize = 10_000;

/// Terms of campaigns seen by this instance, shared by the clones of one store.
#[derive(Debug, Clone, Default)]
pub(super) struct TermsCache(Arc<Mutex<HashMap<i64, Coupon>>>);

impl TermsCache {
    pub(super) fn get(&self, id: CouponId) -> Option<Coupon> {
        self.0.lock().ok().and_then(|t| t.get(&id.get()).cloned())
    }

    pub(super) fn remember(&self, coupon: &Coupon) {
        if let Ok(mut terms) = self.0.lock() {
            if terms.len() >= CAPACITY {
                terms.clear();
            }
            terms.insert(coupon.id.get(), coupon.clone());
        }
    }

    /// Records a sell-out the database reported, so later issues are refused here.
    pub(super) fn mark_sold_out(&self, coupon: CouponId) {
        if let Ok(mut terms) = self.0.lock()
            && let Some(known) = terms.get_mut(&coupon.get())
        {
            known.remaining_quantity = 0;
        }
    }
}
