//! The invariants checked at the end of the run, as pure functions of what the client,
//! the database and the stream hold: each returns the violations it finds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use adapter_dataplatform::test_support::StreamMessage;
use serde_json::Value;

use crate::load::{Ledger, Response};

/// A fault from its injection until the system had recovered from it.
#[derive(Debug, Clone)]
pub struct Window {
    pub what: String,
    pub from: Instant,
    pub to: Instant,
}

/// Operations on the catalogue, which must never fail (the replica going away included).
pub const CATALOGUE: [&str; 3] = ["products_page", "product", "best"];

/// Nothing answered 5xx (nor broke the connection) except a 503 inside a fault window or
/// `grace` after it; no catalogue read failed at all.
pub fn statuses(responses: &[Response], windows: &[Window], grace: Duration) -> Vec<String> {
    let in_window = |at: Instant| windows.iter().any(|w| at >= w.from && at <= w.to + grace);
    let mut bad: BTreeMap<(&str, u16, bool), usize> = BTreeMap::new();
    for r in responses {
        let catalogue_failed = CATALOGUE.contains(&r.op) && r.status != 200;
        let server_failed = r.status == 0 || (r.status >= 500 && r.status != 503);
        let shed_outside = r.status == 503 && !in_window(r.at);
        if catalogue_failed || server_failed || shed_outside {
            *bad.entry((r.op, r.status, in_window(r.at))).or_default() += 1;
        }
    }
    bad.into_iter()
        .map(|((op, status, inside), n)| {
            let when = if inside {
                "inside a fault window"
            } else {
                "outside any fault window"
            };
            format!("{op}: {n} × status {status} {when}")
        })
        .collect()
}

/// Every paid order is on the stream exactly once: one message per `Nats-Msg-Id`, and the
/// orders of the messages are exactly the paid ones.
pub fn stream_exactly_once(messages: &[StreamMessage], paid: &BTreeSet<i64>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut orders: BTreeMap<i64, usize> = BTreeMap::new();
    for m in messages {
        match m.msg_id.as_deref() {
            Some(id) => *by_id.entry(id).or_default() += 1,
            None => problems.push("a message without Nats-Msg-Id".to_owned()),
        }
        let order = serde_json::from_str::<Value>(&m.payload)
            .ok()
            .and_then(|v| v.get("order")?.get("orderId")?.as_i64());
        match order {
            Some(order) => *orders.entry(order).or_default() += 1,
            None => problems.push(format!("a message without an order: {}", m.payload)),
        }
    }
    let repeated = by_id.values().filter(|n| **n > 1).count();
    if repeated > 0 {
        problems.push(format!(
            "{repeated} Nats-Msg-Id(s) on the stream more than once"
        ));
    }
    let twice: Vec<_> = orders
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(o, _)| o)
        .collect();
    if !twice.is_empty() {
        problems.push(format!("orders published more than once: {twice:?}"));
    }
    let published: BTreeSet<i64> = orders.keys().copied().collect();
    let lost: Vec<_> = paid.difference(&published).collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{} paid orders not on the stream: {lost:?}",
            lost.len()
        ));
    }
    let stray: Vec<_> = published.difference(paid).collect();
    if !stray.is_empty() {
        problems.push(format!("orders on the stream that are not paid: {stray:?}"));
    }
    problems
}

/// The orders' statuses in the database are the ones the client was answered.
pub fn orders_match(ledger: &Ledger, database: &BTreeMap<i64, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, order) in &ledger.orders {
        match database.get(id) {
            Some(status) if status == order.status => {}
            Some(status) => problems.push(format!(
                "order {id}: the client was told {}, the database holds {status}",
                order.status
            )),
            None => problems.push(format!("order {id}: answered 201 but not in the database")),
        }
    }
    let unknown = database.len().saturating_sub(ledger.orders.len());
    if database.keys().any(|id| !ledger.orders.contains_key(id)) {
        problems.push(format!(
            "{unknown} order(s) in the database that no client was answered"
        ));
    }
    problems
}

/// Each balance is the points charged minus the orders paid, as answered to the client.
pub fn balances(ledger: &Ledger, users: &[i64], balance: &HashMap<i64, i64>) -> Vec<String> {
    let mut expected: HashMap<i64, i64> = ledger.charged.clone();
    for order in ledger.orders.values().filter(|o| o.status == "PAID") {
        *expected.entry(order.user).or_default() -= order.pay_amount;
    }
    users
        .iter()
        .filter_map(|user| {
            let want = expected.get(user).copied().unwrap_or(0);
            let got = balance.get(user).copied().unwrap_or(0);
            (want != got)
                .then(|| format!("user {user}: balance {got}, charges minus payments {want}"))
        })
        .collect()
}

/// Each product's stock is its initial stock minus the quantities of its orders that are
/// not cancelled, and never negative.
pub fn stock(
    ledger: &Ledger,
    initial: &BTreeMap<i64, i64>,
    stock: &HashMap<i64, i64>,
) -> Vec<String> {
    let mut expected = initial.clone();
    for order in ledger
        .orders
        .values()
        .filter(|o| o.status == "NOT_PAID" || o.status == "PAID")
    {
        for (product, quantity) in &order.lines {
            *expected.entry(*product).or_default() -= quantity;
        }
    }
    expected
        .iter()
        .filter_map(|(product, want)| {
            let got = stock.get(product).copied().unwrap_or(i64::MIN);
            (got != *want || got < 0)
                .then(|| format!("product {product}: stock {got}, initial minus orders {want}"))
        })
        .collect()
}

/// The coupon was issued exactly to the users answered 201, never past its quantity, and
/// sold out only once all of it was issued.
pub fn coupons(ledger: &Ledger, total: i64, in_database: i64, remaining: i64) -> Vec<String> {
    let issued = i64::try_from(ledger.issued.len()).unwrap_or(i64::MAX);
    let mut problems = Vec::new();
    if in_database != issued {
        problems.push(format!(
            "{in_database} user coupons in the database, {issued} answered 201"
        ));
    }
    if remaining != total - issued || remaining < 0 {
        problems.push(format!(
            "remaining {remaining}, total {total} minus issued {issued}"
        ));
    }
    if ledger.sold_out > 0 && issued != total {
        problems.push(format!(
            "{} refused as sold out with only {issued} of {total} issued",
            ledger.sold_out
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Order;

    fn message(id: &str, order: i64) -> StreamMessage {
        StreamMessage {
            msg_id: Some(id.to_owned()),
            payload: format!(r#"{{"eventId":"{id}","order":{{"orderId":{order}}}}}"#),
        }
    }

    #[test]
    fn a_503_counts_only_inside_a_window_and_its_grace() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let windows = [Window {
            what: "kill".into(),
            from: at(1_000),
            to: at(2_000),
        }];
        let r = |op, status, ms| Response {
            op,
            status,
            at: at(ms),
        };
        let grace = Duration::from_millis(500);
        assert!(
            statuses(
                &[r("charge", 503, 1_500), r("charge", 503, 2_400)],
                &windows,
                grace
            )
            .is_empty()
        );
        assert_eq!(
            statuses(&[r("charge", 503, 2_600)], &windows, grace).len(),
            1
        );
        assert_eq!(
            statuses(&[r("charge", 502, 1_500)], &windows, grace).len(),
            1
        );
        assert_eq!(statuses(&[r("charge", 0, 1_500)], &windows, grace).len(), 1);
        assert_eq!(
            statuses(&[r("product", 503, 1_500)], &windows, grace).len(),
            1,
            "the catalogue never fails"
        );
        assert!(
            statuses(
                &[r("charge", 409, 100), r("product", 200, 1_500)],
                &windows,
                grace
            )
            .is_empty()
        );
    }

    #[test]
    fn the_stream_must_hold_each_paid_order_once() {
        let paid = BTreeSet::from([1, 2]);
        assert!(stream_exactly_once(&[message("a", 1), message("b", 2)], &paid).is_empty());
        assert_eq!(
            stream_exactly_once(&[message("a", 1)], &paid).len(),
            1,
            "one lost"
        );
        assert_eq!(
            stream_exactly_once(&[message("a", 1), message("a", 1), message("b", 2)], &paid).len(),
            2,
            "a repeated id, an order twice"
        );
        assert_eq!(
            stream_exactly_once(&[message("a", 1), message("b", 2), message("c", 3)], &paid).len(),
            1,
            "an order that is not paid"
        );
    }

    fn ledger() -> Ledger {
        let mut ledger = Ledger::default();
        ledger.charged.insert(7, 50_000);
        ledger.orders.insert(
            1,
            Order {
                user: 7,
                lines: vec![(10, 2)],
                status: "PAID",
                pay_amount: 3_000,
            },
        );
        ledger.orders.insert(
            2,
            Order {
                user: 7,
                lines: vec![(10, 1), (11, 1)],
                status: "CANCELLED",
                pay_amount: 2_000,
            },
        );
        ledger.orders.insert(
            3,
            Order {
                user: 7,
                lines: vec![(11, 3)],
                status: "NOT_PAID",
                pay_amount: 4_000,
            },
        );
        ledger
    }

    #[test]
    fn balances_and_stock_follow_the_answers() {
        let ledger = ledger();
        assert!(balances(&ledger, &[7, 8], &HashMap::from([(7, 47_000)])).is_empty());
        assert_eq!(
            balances(&ledger, &[7], &HashMap::from([(7, 45_000)])).len(),
            1
        );
        let initial = BTreeMap::from([(10, 5), (11, 5)]);
        assert!(stock(&ledger, &initial, &HashMap::from([(10, 3), (11, 2)])).is_empty());
        assert_eq!(
            stock(&ledger, &initial, &HashMap::from([(10, 3), (11, 1)])).len(),
            1
        );
    }

    #[test]
    fn orders_and_coupons_must_match_the_database() {
        let ledger = ledger();
        let database: BTreeMap<i64, String> = [(1, "PAID"), (2, "CANCELLED"), (3, "NOT_PAID")]
            .into_iter()
            .map(|(id, s)| (id, s.to_owned()))
            .collect();
        assert!(orders_match(&ledger, &database).is_empty());
        let mut extra = database.clone();
        extra.insert(4, "PAID".to_owned());
        assert_eq!(orders_match(&ledger, &extra).len(), 1);
        let mut changed = database;
        changed.insert(3, "EXPIRED".to_owned());
        assert_eq!(orders_match(&ledger, &changed).len(), 1);

        let mut ledger = Ledger::default();
        ledger.issued.insert(1, 100);
        ledger.issued.insert(2, 101);
        assert!(coupons(&ledger, 5, 2, 3).is_empty());
        assert_eq!(coupons(&ledger, 5, 3, 3).len(), 1);
        ledger.sold_out = 1;
        assert_eq!(
            coupons(&ledger, 5, 2, 3).len(),
            1,
            "sold out before the last"
        );
    }
}
