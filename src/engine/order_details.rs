//! `order_details_mv`: one row per order whose user exists, joined with the
//! user, the user's latest address, the order's items and its latest status.
//!
//! The hot path avoids rebuilding what a change did not touch. A batch marks
//! three kinds of keys dirty: orders (their row must be looked at), users
//! (their name, e-mail, phone or address changed) and item lists (an order's
//! items changed). When the batch ends, each dirty order's row is composed from
//! parts: the user's part is recomputed only for dirty users, the items' part
//! only for dirty item lists, and every other part is carried over from the
//! row the order had before, which is exact because every change that could
//! alter a part marks it dirty. Strings are shared (`Arc<str>`), so composing a
//! row copies pointers, not text, and each item's rendered line is built once,
//! when the item changes.

use std::sync::Arc;

use ahash::{AHashMap, AHashSet};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, Serializer};

use super::{Deduplicator, IncrementalView, Keyed, Table, ViewDelta};
use crate::change::{micros, Address, Change, Item, Order, RowChange, TableChange, Timestamp, User};

/// Text shared between the rows that contain it.
pub type Text = Arc<str>;

/// A row of `order_details_mv`. Money is an exact decimal string, times are RFC 3339.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderDetails {
    pub order_id: i64,
    pub user_id: i64,
    #[schema(value_type = String, example = "125.50")]
    pub total: Decimal,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub order_date: Option<Timestamp>,
    #[schema(value_type = String)]
    pub user_name: Text,
    #[schema(value_type = String)]
    pub user_email: Text,
    #[schema(value_type = Option<String>)]
    pub user_phone: Option<Text>,
    /// The user's newest address: `street, city, state, postal_code, country`.
    #[schema(value_type = Option<String>)]
    pub full_address: Option<Text>,
    /// `name (Qty: q, Price: p, Total: t)` per item by id, joined by ` | `.
    #[schema(value_type = Option<String>)]
    pub order_items_details: Option<Text>,
    pub item_count: i64,
    #[schema(value_type = String, example = "125.50")]
    pub items_total: Decimal,
    /// The newer of the order's own status and its latest status event.
    #[schema(value_type = Option<String>)]
    pub order_status: Option<Text>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_order_update: Option<Timestamp>,
}

/// A stored user, with its strings ready to share with its rows.
#[derive(Debug, Serialize, Deserialize)]
struct UserEntry {
    user_id: i64,
    name: Text,
    email: Text,
    phone: Option<Text>,
}

impl From<User> for UserEntry {
    fn from(u: User) -> Self {
        UserEntry { user_id: u.user_id, name: u.name.into(), email: u.email.into(), phone: u.phone.map(Into::into) }
    }
}

/// A stored order.
#[derive(Debug, Serialize, Deserialize)]
struct OrderEntry {
    order_id: i64,
    user_id: i64,
    total: Decimal,
    #[serde(with = "micros::option")]
    order_date: Option<Timestamp>,
    status: Option<Text>,
    #[serde(with = "micros::option")]
    updated_date: Option<Timestamp>,
}

impl From<Order> for OrderEntry {
    fn from(o: Order) -> Self {
        OrderEntry {
            order_id: o.order_id,
            user_id: o.user_id,
            total: o.total,
            order_date: o.order_date,
            status: o.order_status.map(Into::into),
            updated_date: o.updated_date,
        }
    }
}

/// A stored item: what the view needs of it, rendered once.
#[derive(Debug, Serialize, Deserialize)]
struct ItemEntry {
    id: i64,
    order_id: Option<i64>,
    /// `quantity × price`, absent when the quantity is NULL (SQL adds nothing).
    line_total: Option<Decimal>,
    /// `name (Qty: q, Price: p, Total: t)`, absent when name or quantity is NULL.
    line: Option<Box<str>>,
}

impl From<Item> for ItemEntry {
    fn from(i: Item) -> Self {
        let line_total = i.quantity.map(|q| Decimal::from(q) * i.price);
        let line = match (&i.name, i.quantity, line_total) {
            (Some(name), Some(q), Some(t)) => Some(format!("{name} (Qty: {q}, Price: {}, Total: {t})", i.price).into_boxed_str()),
            _ => None,
        };
        ItemEntry { id: i.id, order_id: i.order_id, line_total, line }
    }
}

/// The newest status event of an order.
#[derive(Debug, Serialize, Deserialize)]
struct LatestStatus {
    id: i64,
    #[serde(with = "micros")]
    updated_at: Timestamp,
    status: Text,
}

impl LatestStatus {
    fn recency(&self) -> (Timestamp, i64, &str) {
        (self.updated_at, self.id, &self.status)
    }
}

macro_rules! keyed {
    ($($t:ty => |$r:ident| $key:expr, $parent:expr;)*) => {$(
        impl Keyed for $t {
            fn key(&$r) -> i64 { $key }
            fn parent(&$r) -> Option<i64> { $parent }
        }
    )*};
}

keyed! {
    User => |self| self.user_id, None;
    UserEntry => |self| self.user_id, None;
    Address => |self| self.address_id, Some(self.user_id);
    Order => |self| self.order_id, Some(self.user_id);
    OrderEntry => |self| self.order_id, Some(self.user_id);
    Item => |self| self.id, self.order_id;
    ItemEntry => |self| self.id, self.order_id;
}

/// The user's columns of a view row.
#[derive(Clone)]
struct UserPart {
    name: Text,
    email: Text,
    phone: Option<Text>,
    full_address: Option<Text>,
}

impl UserPart {
    fn of_row(row: &OrderDetails) -> Self {
        UserPart {
            name: row.user_name.clone(),
            email: row.user_email.clone(),
            phone: row.user_phone.clone(),
            full_address: row.full_address.clone(),
        }
    }
}

/// The items' columns of a view row. Follows SQL's rules for NULLs, so the
/// view equals the same query run in MySQL: an item without name or quantity
/// is counted but left out of the details, and adds nothing to the total.
struct ItemsPart {
    details: Option<Text>,
    count: i64,
    total: Decimal,
}

impl ItemsPart {
    fn of<'a>(items: impl Iterator<Item = &'a ItemEntry>) -> Self {
        let mut details = String::new();
        let (mut count, mut total) = (0, Decimal::new(0, 2));
        for item in items {
            count += 1;
            if let Some(t) = item.line_total {
                total += t;
            }
            if let Some(line) = &item.line {
                if !details.is_empty() {
                    details.push_str(" | ");
                }
                details.push_str(line);
            }
        }
        ItemsPart { details: (!details.is_empty()).then(|| details.into()), count, total }
    }

    fn of_row(row: &OrderDetails) -> Self {
        ItemsPart { details: row.order_items_details.clone(), count: row.item_count, total: row.items_total }
    }
}

/// The state behind `order_details_mv` and the view itself.
#[derive(Default)]
pub struct OrderDetailsView {
    users: Table<UserEntry>,
    addresses: Table<Address>,
    orders: Table<OrderEntry>,
    items: Table<ItemEntry>,
    /// The newest status event per order, kept even for orders not seen yet.
    status: AHashMap<i64, LatestStatus>,
    rows: AHashMap<i64, Arc<OrderDetails>>,
    /// Orders whose row must be looked at when the batch ends.
    dirty_orders: Vec<i64>,
    /// Users whose columns changed (the user or one of its addresses).
    dirty_users: Vec<i64>,
    /// Orders whose items changed.
    dirty_items: AHashSet<i64>,
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

    /// The input state, for a snapshot: everything the view is computed
    /// from, nothing derived from it (rows are recomputed on restore).
    pub fn state(&self) -> impl Serialize + '_ {
        StateRef { users: Seq(&self.users), addresses: Seq(&self.addresses), orders: Seq(&self.orders), items: Seq(&self.items), status: &self.status }
    }

    /// A view rebuilt from a snapshot's state, with its rows computed; the
    /// deltas insert every row. Deduplication starts afresh: the source
    /// resumes right after the positions the snapshot covers.
    pub fn restore(state: EngineState) -> (Self, Vec<ViewDelta<OrderDetails>>) {
        let mut view = OrderDetailsView::new();
        view.rows.reserve(state.orders.len());
        let user_ids: Vec<i64> = state.users.iter().map(|u| u.user_id).collect();
        let order_ids: Vec<i64> = state.orders.iter().map(|o| o.order_id).collect();
        // The four tables are independent: fill them side by side.
        let (users, addresses, orders, items) = (&mut view.users, &mut view.addresses, &mut view.orders, &mut view.items);
        rayon::scope(|s| {
            s.spawn(|_| users.extend(state.users));
            s.spawn(|_| addresses.extend(state.addresses));
            s.spawn(|_| orders.extend(state.orders));
            s.spawn(|_| items.extend(state.items));
        });
        view.status = state.status;
        let deltas = view.compose_all(&user_ids, order_ids);
        (view, deltas)
    }

    /// Every row from scratch, on all cores: a restore recomputes the whole
    /// view, and each row reads only the (complete, unchanging) input tables.
    /// Each user's columns are computed once, shared by their orders.
    fn compose_all(&mut self, user_ids: &[i64], mut order_ids: Vec<i64>) -> Vec<ViewDelta<OrderDetails>> {
        use rayon::prelude::*;
        let parts: Vec<(i64, Option<UserPart>)> = user_ids.par_iter().map(|&u| (u, self.user_part(u))).collect();
        let fresh_users: AHashMap<i64, Option<UserPart>> = parts.into_iter().collect();
        order_ids.sort_unstable();
        order_ids.dedup();
        let this = &*self;
        let rows: Vec<(i64, OrderDetails)> = order_ids.par_iter().filter_map(|&key| Some((key, this.compose(key, None, &fresh_users)?))).collect();
        let mut deltas = Vec::with_capacity(rows.len());
        for (key, row) in rows {
            let row = Arc::new(row);
            self.rows.insert(key, Arc::clone(&row));
            deltas.push(ViewDelta { key, before: None, after: Some(row) });
        }
        deltas
    }

    fn apply(&mut self, change: TableChange) {
        match change {
            TableChange::Users(c) => {
                let dirty = &mut self.dirty_users;
                apply_row(&mut self.users, c, |u: &UserEntry| dirty.push(u.user_id));
            }
            TableChange::Addresses(c) => {
                let dirty = &mut self.dirty_users;
                apply_row(&mut self.addresses, c, |a: &Address| dirty.push(a.user_id));
            }
            TableChange::Orders(c) => {
                let dirty = &mut self.dirty_orders;
                apply_row(&mut self.orders, c, |o: &OrderEntry| dirty.push(o.order_id));
            }
            TableChange::Items(c) => {
                let (orders, items) = (&mut self.dirty_orders, &mut self.dirty_items);
                apply_row(&mut self.items, c, |i: &ItemEntry| {
                    if let Some(order) = i.order_id {
                        orders.push(order);
                        items.insert(order);
                    }
                });
            }
            TableChange::Status(event) => {
                let newer = self.status.get(&event.order_id).is_none_or(|old| event.recency() > old.recency());
                if newer {
                    self.dirty_orders.push(event.order_id);
                    let latest = LatestStatus { id: event.id, updated_at: event.updated_at, status: event.status.into() };
                    self.status.insert(event.order_id, latest);
                }
            }
        }
    }

    /// The user's columns from the current state, or `None` without the user.
    fn user_part(&self, user_id: i64) -> Option<UserPart> {
        let user = self.users.get(user_id)?;
        let full_address = self.addresses.children(user_id).next_back().and_then(|id| self.addresses.get(id)).map(|a| format_address(a).into());
        Some(UserPart { name: user.name.clone(), email: user.email.clone(), phone: user.phone.clone(), full_address })
    }

    /// Composes the row of `order_id`, reusing the parts of its previous row
    /// that no change of this batch touched.
    fn compose(&self, order_id: i64, old: Option<&OrderDetails>, fresh_users: &AHashMap<i64, Option<UserPart>>) -> Option<OrderDetails> {
        let order = self.orders.get(order_id)?;
        let user = match fresh_users.get(&order.user_id) {
            Some(fresh) => fresh.clone()?,
            None => match old {
                Some(old) if old.user_id == order.user_id => UserPart::of_row(old),
                _ => self.user_part(order.user_id)?,
            },
        };
        let items = match old {
            Some(old) if !self.dirty_items.contains(&order_id) => ItemsPart::of_row(old),
            _ => ItemsPart::of(self.items.children(order_id).filter_map(|id| self.items.get(id))),
        };
        let (order_status, last_order_update) = latest_status(order, self.status.get(&order_id));
        Some(OrderDetails {
            order_id,
            user_id: order.user_id,
            total: order.total,
            order_date: order.order_date,
            user_name: user.name,
            user_email: user.email,
            user_phone: user.phone,
            full_address: user.full_address,
            order_items_details: items.details,
            item_count: items.count,
            items_total: items.total,
            order_status,
            last_order_update,
        })
    }

    fn flush_dirty(&mut self) -> Vec<ViewDelta<OrderDetails>> {
        // Each dirty user's part once, and every order of theirs looked at.
        let mut users = std::mem::take(&mut self.dirty_users);
        users.sort_unstable();
        users.dedup();
        let mut fresh_users = AHashMap::with_capacity(users.len());
        for &user in &users {
            fresh_users.insert(user, self.user_part(user));
            self.dirty_orders.extend(self.orders.children(user));
        }
        users.clear();
        self.dirty_users = users;

        let mut keys = std::mem::take(&mut self.dirty_orders);
        keys.sort_unstable();
        keys.dedup();
        let mut deltas = Vec::with_capacity(keys.len());
        for &key in &keys {
            let old = self.rows.get(&key);
            let new = self.compose(key, old.map(|r| &**r), &fresh_users);
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
        self.dirty_orders = keys;
        self.dirty_items.clear();
        deltas
    }
}

/// The engine's input state as read back from a snapshot.
#[derive(Deserialize)]
pub struct EngineState {
    users: Vec<UserEntry>,
    addresses: Vec<Address>,
    orders: Vec<OrderEntry>,
    items: Vec<ItemEntry>,
    status: AHashMap<i64, LatestStatus>,
}

/// [`EngineState`] borrowed from a live view, so a snapshot copies nothing.
#[derive(Serialize)]
struct StateRef<'a> {
    users: Seq<'a, UserEntry>,
    addresses: Seq<'a, Address>,
    orders: Seq<'a, OrderEntry>,
    items: Seq<'a, ItemEntry>,
    status: &'a AHashMap<i64, LatestStatus>,
}

/// A table's rows as a sequence.
struct Seq<'a, R>(&'a Table<R>);

impl<R: Keyed + Serialize> Serialize for Seq<'_, R> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.rows())
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

/// Retracts `before` and inserts `after` (stored as `E`), calling `touch` with
/// every stored row that was removed, replaced or added. Retraction goes by
/// primary key, so a redelivered or stale `before` cannot leave a ghost row.
fn apply_row<R: Keyed, E: Keyed + From<R>>(table: &mut Table<E>, change: RowChange<R>, mut touch: impl FnMut(&E)) {
    let after_key = change.after.as_ref().map(Keyed::key);
    if let Some(before) = change.before {
        if after_key != Some(before.key()) {
            if let Some(old) = table.remove(before.key()) {
                touch(&old);
            }
        }
    }
    if let Some(after) = change.after {
        let after = E::from(after);
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

/// The newer of the order's own status and its newest status event; on equal
/// times the event wins, as it was written by the service that moved the order on.
fn latest_status(order: &OrderEntry, event: Option<&LatestStatus>) -> (Option<Text>, Option<Timestamp>) {
    match event {
        Some(e) if order.updated_date.is_none_or(|own| e.updated_at >= own) => (Some(e.status.clone()), Some(e.updated_at)),
        _ => (order.status.clone(), order.updated_date),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{SourcePos, StatusEvent};

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
        assert_eq!(deltas[0].after.as_ref().unwrap().user_name.as_ref(), "User 7");
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
