//! `order_details_mv`: one row per order whose user exists, joined with the
//! user, the user's latest address, the order's items and its latest status.

use std::fmt::Write as _;
use std::sync::Arc;

use ahash::AHashMap;
use rust_decimal::Decimal;
use serde::Serialize;

use super::{Deduplicator, IncrementalView, Keyed, Table, ViewDelta};
use crate::change::{Address, Change, Item, Order, RowChange, StatusEvent, TableChange, Timestamp, User};

/// A row of `order_details_mv`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OrderDetails {
    pub order_id: i64,
    pub user_id: i64,
    pub total: Decimal,
    pub order_date: Option<Timestamp>,
    pub user_name: String,
    pub user_email: String,
    pub user_phone: Option<String>,
    pub full_address: Option<String>,
    pub order_items_details: Option<String>,
    pub item_count: i64,
    pub items_total: Decimal,
    pub order_status: Option<String>,
    pub last_order_update: Option<Timestamp>,
}

impl Keyed for User {
    fn key(&self) -> i64 {
        self.user_id
    }
    fn parent(&self) -> Option<i64> {
        None
    }
}

impl Keyed for Address {
    fn key(&self) -> i64 {
        self.address_id
    }
    fn parent(&self) -> Option<i64> {
        Some(self.user_id)
    }
}

impl Keyed for Order {
    fn key(&self) -> i64 {
        self.order_id
    }
    fn parent(&self) -> Option<i64> {
        Some(self.user_id)
    }
}

impl Keyed for Item {
    fn key(&self) -> i64 {
        self.id
    }
    fn parent(&self) -> Option<i64> {
        self.order_id
    }
}

/// The state behind `order_details_mv` and the view itself.
#[derive(Default)]
pub struct OrderDetailsView {
    users: Table<User>,
    addresses: Table<Address>,
    orders: Table<Order>,
    items: Table<Item>,
    /// The newest status event per order, kept even for orders not seen yet.
    status: AHashMap<i64, StatusEvent>,
    rows: AHashMap<i64, Arc<OrderDetails>>,
    /// Keys touched by the current batch; sorted and deduplicated at the end.
    dirty: Vec<i64>,
    dedup: Deduplicator,
    duplicates: u64,
}

impl OrderDetailsView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, order_id: i64) -> Option<&Arc<OrderDetails>> {
        self.rows.get(&order_id)
    }

    /// All rows, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &Arc<OrderDetails>> {
        self.rows.values()
    }

    /// Records skipped because their position had been applied already.
    pub fn duplicates_skipped(&self) -> u64 {
        self.duplicates
    }

    /// Sizes of the input tables, for status and memory reports.
    pub fn state_sizes(&self) -> [(&'static str, usize); 5] {
        [
            ("users", self.users.len()),
            ("addresses", self.addresses.len()),
            ("orders", self.orders.len()),
            ("order_items", self.items.len()),
            ("status_events", self.status.len()),
        ]
    }

    fn apply(&mut self, change: TableChange) {
        let dirty = &mut self.dirty;
        let orders = &self.orders;
        match change {
            TableChange::Users(c) => apply_row(&mut self.users, c, |u| {
                dirty.extend(orders.children(u.user_id));
            }),
            TableChange::Addresses(c) => apply_row(&mut self.addresses, c, |a| {
                dirty.extend(orders.children(a.user_id));
            }),
            TableChange::Orders(c) => apply_row(&mut self.orders, c, |o| {
                dirty.push(o.order_id);
            }),
            TableChange::Items(c) => apply_row(&mut self.items, c, |i| {
                dirty.extend(i.order_id);
            }),
            TableChange::Status(event) => {
                let newer = self.status.get(&event.order_id).is_none_or(|old| event.recency() > old.recency());
                if newer {
                    dirty.push(event.order_id);
                    self.status.insert(event.order_id, event);
                }
            }
        }
    }

    /// Computes the view row of `order_id` from the current state.
    fn compute(&self, order_id: i64) -> Option<OrderDetails> {
        let order = self.orders.get(order_id)?;
        let user = self.users.get(order.user_id)?;
        let full_address = self
            .addresses
            .children(user.user_id)
            .next_back()
            .and_then(|id| self.addresses.get(id))
            .map(format_address);
        let items = self.items.children(order_id).filter_map(|id| self.items.get(id));
        let summary = ItemSummary::of(items);
        let (order_status, last_order_update) = latest_status(order, self.status.get(&order_id));
        Some(OrderDetails {
            order_id,
            user_id: user.user_id,
            total: order.total,
            order_date: order.order_date,
            user_name: user.name.clone(),
            user_email: user.email.clone(),
            user_phone: user.phone.clone(),
            full_address,
            order_items_details: summary.details,
            item_count: summary.count,
            items_total: summary.total,
            order_status,
            last_order_update,
        })
    }

    fn flush_dirty(&mut self) -> Vec<ViewDelta<OrderDetails>> {
        let mut keys = std::mem::take(&mut self.dirty);
        keys.sort_unstable();
        keys.dedup();
        let mut deltas = Vec::with_capacity(keys.len());
        for &key in &keys {
            let new = self.compute(key);
            let old = self.rows.get(&key);
            match (old, new) {
                (None, None) => {}
                (Some(old), Some(new)) if **old == new => {}
                (_, Some(new)) => {
                    let new = Arc::new(new);
                    let before = self.rows.insert(key, Arc::clone(&new));
                    deltas.push(ViewDelta { key, before, after: Some(new) });
                }
                (Some(_), None) => {
                    let before = self.rows.remove(&key);
                    deltas.push(ViewDelta { key, before, after: None });
                }
            }
        }
        keys.clear();
        self.dirty = keys;
        deltas
    }
}

impl IncrementalView for OrderDetailsView {
    type Row = OrderDetails;

    fn apply_batch(&mut self, changes: Vec<Change>) -> Vec<ViewDelta<OrderDetails>> {
        for change in changes {
            if self.dedup.accept(change.pos) {
                self.apply(change.data);
            } else {
                self.duplicates += 1;
            }
        }
        self.flush_dirty()
    }

    fn len(&self) -> usize {
        self.rows.len()
    }
}

/// Retracts `before` and inserts `after`, calling `touch` with every stored
/// row that was removed, replaced or added. Retraction goes by primary key, so
/// a redelivered or stale `before` cannot leave a ghost row behind.
fn apply_row<R: Keyed>(table: &mut Table<R>, change: RowChange<R>, mut touch: impl FnMut(&R)) {
    let after_key = change.after.as_ref().map(Keyed::key);
    if let Some(before) = change.before {
        if after_key != Some(before.key()) {
            if let Some(old) = table.remove(before.key()) {
                touch(&old);
            }
        }
    }
    if let Some(after) = change.after {
        touch(&after);
        if let Some(old) = table.upsert(after) {
            touch(&old);
        }
    }
}

/// `street, city, state, postal_code, country`, absent parts left out with
/// their separator (SQL's `CONCAT_WS`).
pub fn format_address(a: &Address) -> String {
    let parts = [Some(&a.street), Some(&a.city), a.state.as_ref(), a.postal_code.as_ref(), Some(&a.country)];
    let mut out = String::new();
    for part in parts.into_iter().flatten() {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(part);
    }
    out
}

/// The items' columns of a view row. Follows SQL's rules for NULLs, so the
/// view equals the same query run in MySQL: an item without name or quantity
/// is counted but left out of the details, and adds nothing to the total.
struct ItemSummary {
    details: Option<String>,
    count: i64,
    total: Decimal,
}

impl ItemSummary {
    fn of<'a>(items: impl Iterator<Item = &'a Item>) -> Self {
        let mut summary = ItemSummary { details: None, count: 0, total: Decimal::new(0, 2) };
        for item in items {
            summary.count += 1;
            let Some(quantity) = item.quantity else { continue };
            let line_total = Decimal::from(quantity) * item.price;
            summary.total += line_total;
            let Some(name) = &item.name else { continue };
            let details = summary.details.get_or_insert_with(String::new);
            if !details.is_empty() {
                details.push_str(" | ");
            }
            let _ = write!(details, "{name} (Qty: {quantity}, Price: {}, Total: {line_total})", item.price);
        }
        summary
    }
}

/// The newer of the order's own status and its newest status event; on equal
/// times the event wins, as it was written by the service that moved the order on.
fn latest_status(order: &Order, event: Option<&StatusEvent>) -> (Option<String>, Option<Timestamp>) {
    match event {
        Some(e) if order.updated_date.is_none_or(|own| e.updated_at >= own) => (Some(e.status.clone()), Some(e.updated_at)),
        _ => (order.order_status.clone(), order.updated_date),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::SourcePos;

    fn user(id: i64) -> User {
        User { user_id: id, name: format!("User {id}"), email: format!("u{id}@example.com"), phone: None }
    }
    fn order(id: i64, user_id: i64) -> Order {
        Order {
            order_id: id,
            user_id,
            total: Decimal::new(1050, 2),
            order_date: Some(Timestamp(1_000_000)),
            order_status: Some("Created".into()),
            updated_date: Some(Timestamp(1_000_000)),
        }
    }
    fn item(id: i64, order_id: i64, qty: i64, cents: i64) -> Item {
        Item { id, order_id: Some(order_id), name: Some(format!("Item {id}")), quantity: Some(qty), price: Decimal::new(cents, 2) }
    }
    fn change(data: TableChange) -> Change {
        Change { pos: None, data }
    }

    #[test]
    fn order_waits_for_its_user() {
        let mut v = OrderDetailsView::new();
        assert!(v.apply_batch(vec![change(TableChange::Orders(RowChange::insert(order(1, 7))))]).is_empty());
        let deltas = v.apply_batch(vec![change(TableChange::Users(RowChange::insert(user(7))))]);
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0].after.as_ref().unwrap().user_name, "User 7");
    }

    #[test]
    fn items_are_listed_by_id_with_exact_totals() {
        let mut v = OrderDetailsView::new();
        v.apply_batch(vec![
            change(TableChange::Users(RowChange::insert(user(1)))),
            change(TableChange::Orders(RowChange::insert(order(1, 1)))),
            change(TableChange::Items(RowChange::insert(item(9, 1, 3, 10)))),
            change(TableChange::Items(RowChange::insert(item(2, 1, 9, 7711)))),
        ]);
        let row = v.get(1).unwrap();
        assert_eq!(
            row.order_items_details.as_deref(),
            Some("Item 2 (Qty: 9, Price: 77.11, Total: 693.99) | Item 9 (Qty: 3, Price: 0.10, Total: 0.30)")
        );
        assert_eq!(row.items_total.to_string(), "694.29");
        assert_eq!(row.item_count, 2);
    }

    #[test]
    fn older_status_event_arriving_late_changes_nothing() {
        let mut v = OrderDetailsView::new();
        let ev = |id, secs: f64, status: &str| StatusEvent {
            id,
            order_id: 1,
            status: status.into(),
            updated_at: Timestamp::from_unix_seconds(secs),
        };
        v.apply_batch(vec![
            change(TableChange::Status(ev(2, 20.0, "cooked"))),
            change(TableChange::Users(RowChange::insert(user(1)))),
            change(TableChange::Orders(RowChange::insert(order(1, 1)))),
        ]);
        assert_eq!(v.get(1).unwrap().order_status.as_deref(), Some("cooked"));
        let deltas = v.apply_batch(vec![change(TableChange::Status(ev(1, 10.0, "received")))]);
        assert!(deltas.is_empty());
        v.apply_batch(vec![change(TableChange::Status(ev(3, 20.0, "delivered")))]);
        assert_eq!(v.get(1).unwrap().order_status.as_deref(), Some("delivered"), "ties go to the greater id");
    }

    #[test]
    fn deleting_the_user_removes_its_orders_and_redelivery_is_ignored() {
        let mut v = OrderDetailsView::new();
        let at = |offset| Some(SourcePos { stream: 0, offset });
        let insert = Change { pos: at(0), data: TableChange::Users(RowChange::insert(user(1))) };
        v.apply_batch(vec![insert.clone(), change(TableChange::Orders(RowChange::insert(order(1, 1))))]);
        assert_eq!(v.len(), 1);
        let delete = Change { pos: at(1), data: TableChange::Users(RowChange::delete(user(1))) };
        let deltas = v.apply_batch(vec![delete]);
        assert_eq!(deltas[0].kind(), super::super::DeltaKind::Delete);
        assert!(v.apply_batch(vec![insert]).is_empty(), "a redelivered insert must not resurrect the user");
        assert_eq!(v.duplicates_skipped(), 1);
    }

    #[test]
    fn address_parts_that_are_null_are_left_out() {
        let a = Address {
            address_id: 1,
            user_id: 1,
            street: "1 Main St".into(),
            city: "Springfield".into(),
            state: None,
            postal_code: Some("12345".into()),
            country: "USA".into(),
        };
        assert_eq!(format_address(&a), "1 Main St, Springfield, 12345, USA");
    }
}
