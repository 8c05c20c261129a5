//! `order_details_mv`: one row per order whose user exists, joined with the
//! user, the user's latest address, the order's items and its latest status.
//!
//! State lives in slots, one per user id and one per order id, held in
//! [`IdMap`]s (a vector where ids are packed): a user's slot has the user, its
//! address and order ids and its formatted newest address; an order's slot
//! has the order, its newest status event, its items as an [`ItemList`] and
//! its view row. Composing a row reads the order's slot and, at most, its
//! user's slot.
//!
//! The hot path avoids rebuilding what a change did not touch. A batch marks
//! orders dirty (their row must be looked at) and users dirty (their name,
//! e-mail, phone or address changed), and flags orders whose items changed.
//! When the batch ends, each dirty order's row is composed from parts: the
//! user's part is taken from the user's slot only for dirty users (or a moved
//! order), the items' part only for changed item lists, and every other part
//! is carried over from the row the order had before, which is exact because
//! every change that could alter a part marks it. Short text is stored inline
//! and long text shared ([`Text`]), so composing a row copies no long string.
//!
//! The state is far larger than the CPU's cache, so nearly every slot a
//! change touches is a cache miss. A batch therefore asks for the slots of
//! the changes [`LOOKAHEAD`] places ahead of the one it applies, and for the
//! slots, previous rows and shared text of the rows ahead of the one it
//! composes, so that those misses overlap instead of following one another.

use std::sync::Arc;

use ahash::AHashMap;
use rust_decimal::Decimal;
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use smallvec::SmallVec;

use super::item_list::ItemList;
use super::{Deduplicator, IdMap, IncrementalView, ViewDelta};
use crate::change::{micros, Address, Change, Item, Order, RowChange, StatusEvent, TableChange, Text, Timestamp, User};
use cdcview_engine::idmap::{prefetch, prefetch_text};

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
            status: o.order_status,
            updated_date: o.updated_date,
        }
    }
}

/// A stored item: what the view needs of it, rendered once. The snapshot
/// holds it as an [`ItemRecord`].
#[derive(Debug, Deserialize)]
struct ItemEntry {
    id: i64,
    order_id: Option<i64>,
    /// `quantity × price`, absent when the quantity is NULL (SQL adds nothing).
    line_total: Option<Decimal>,
    /// `name (Qty: q, Price: p, Total: t)`, absent when name or quantity is
    /// NULL. Kept here only while the item has no order: otherwise its
    /// order's [`ItemList`] holds it, and one copy is enough.
    line: Option<Box<str>>,
}

impl ItemEntry {
    /// The entry as the view stores it, `self` being as a snapshot holds it:
    /// the line stays only if no order's list holds it.
    fn stored(&self) -> ItemEntry {
        let line = if self.order_id.is_none() { self.line.clone() } else { None };
        ItemEntry { id: self.id, order_id: self.order_id, line_total: self.line_total, line }
    }
}

/// An item as a snapshot holds it: [`ItemEntry`] with its line wherever it is kept.
#[derive(Serialize)]
struct ItemRecord<'a> {
    id: i64,
    order_id: Option<i64>,
    line_total: Option<Decimal>,
    line: Option<&'a str>,
}

/// `quantity × price`, absent when the quantity is NULL, with SQL's scale
/// for a product (the sum of the scales: the quantity's is 0, so the price's).
fn line_total(item: &Item) -> Option<Decimal> {
    item.quantity.map(|q| sql_exact(Decimal::from(q) * item.price, item.price.scale()))
}

/// An item's rendered line (`name (Qty: q, Price: p, Total: t)`, absent when
/// name or quantity is NULL) and its line total, as the view shows them.
/// For other engines fed the same changes (the differential-dataflow twin in
/// `benches/differential`), so that both render items alike.
pub fn item_line(item: &Item) -> (Option<String>, Option<Decimal>) {
    let total = line_total(item);
    let mut line = String::new();
    (write_item_line(&mut line, item, total).then_some(line), total)
}

/// SQL's writing of an exact numeric: the SQL engine's rule, shared.
pub use cdcview_engine::value::sql_exact;

/// Writes `name (Qty: q, Price: p, Total: t)` into `out` (cleared first), or
/// returns false when name or quantity is NULL and the item has no line.
/// Written piece by piece into a reused buffer: this runs for every item
/// change, and `format!` with `Decimal`'s `Display` was a measurable part of
/// applying one.
fn write_item_line(out: &mut String, item: &Item, total: Option<Decimal>) -> bool {
    out.clear();
    let (Some(name), Some(quantity), Some(total)) = (&item.name, item.quantity, total) else { return false };
    out.push_str(name);
    out.push_str(" (Qty: ");
    out.push_str(itoa::Buffer::new().format(quantity));
    out.push_str(", Price: ");
    push_decimal(out, item.price);
    out.push_str(", Total: ");
    push_decimal(out, total);
    out.push(')');
    true
}

/// Appends `d` exactly as its `Display` writes it: every digit of its scale,
/// and a minus sign on negative values (negative zero included).
fn push_decimal(out: &mut String, d: Decimal) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(d.mantissa().unsigned_abs());
    let scale = d.scale() as usize;
    if d.is_sign_negative() {
        out.push('-');
    }
    let int_len = digits.len().saturating_sub(scale);
    out.push_str(if int_len == 0 { "0" } else { &digits[..int_len] });
    if scale > 0 {
        out.push('.');
        out.extend(std::iter::repeat_n('0', scale.saturating_sub(digits.len())));
        out.push_str(&digits[int_len..]);
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
        UserPart { name: row.user_name.clone(), email: row.user_email.clone(), phone: row.user_phone.clone(), full_address: row.full_address.clone() }
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
    fn of_list(list: &ItemList) -> Self {
        ItemsPart { details: list.details().cloned(), count: list.count(), total: list.total() }
    }

    fn of_row(row: &OrderDetails) -> Self {
        ItemsPart { details: row.order_items_details.clone(), count: row.item_count, total: row.items_total }
    }
}

/// Everything the view keeps per user id: the user, if it exists, and the ids
/// of the rows that point at it. Kept in one place so that the join reads one
/// slot instead of probing three tables.
#[derive(Default)]
struct UserSlot {
    user: Option<User>,
    /// The user's address ids, ascending: the last is the newest.
    addresses: SmallVec<[i64; 2]>,
    /// The newest address, formatted; brought up to date when a batch ends.
    full_address: Option<Text>,
    /// The user's order ids, ascending.
    orders: SmallVec<[i64; 4]>,
    /// One of the user's addresses changed in this batch.
    address_changed: bool,
}

impl UserSlot {
    /// The user's columns, or `None` while the user does not exist.
    fn part(&self) -> Option<UserPart> {
        let user = self.user.as_ref()?;
        Some(UserPart { name: user.name.clone(), email: user.email.clone(), phone: user.phone.clone(), full_address: self.full_address.clone() })
    }

    fn is_unused(&self) -> bool {
        self.user.is_none() && self.addresses.is_empty() && self.orders.is_empty()
    }
}

/// Everything the view keeps per order id: the order, its newest status
/// event, its item ids and its view row. Status events and items may arrive
/// before their order; they wait here.
#[derive(Default)]
struct OrderSlot {
    order: Option<OrderEntry>,
    status: Option<LatestStatus>,
    items: ItemList,
    row: Option<Arc<OrderDetails>>,
    /// An item of the order changed in this batch.
    items_changed: bool,
}

impl OrderSlot {
    fn is_unused(&self) -> bool {
        self.order.is_none() && self.status.is_none() && self.items.is_empty() && self.row.is_none()
    }
}

/// Adds `id` to an ascending list of ids, once.
fn link<A: smallvec::Array<Item = i64>>(ids: &mut SmallVec<A>, id: i64) {
    if let Err(at) = ids.binary_search(&id) {
        ids.insert(at, id);
    }
}

/// Removes `id` from an ascending list of ids.
fn unlink<A: smallvec::Array<Item = i64>>(ids: &mut SmallVec<A>, id: i64) {
    if let Ok(at) = ids.binary_search(&id) {
        ids.remove(at);
    }
}

/// The state behind `order_details_mv` and the view itself. Tables are
/// [`IdMap`]s: with auto-increment keys a look-up is an index.
#[derive(Default)]
pub struct OrderDetailsView {
    users: IdMap<UserSlot>,
    addresses: IdMap<Address>,
    orders: IdMap<OrderSlot>,
    items: IdMap<ItemEntry>,
    counts: Counts,
    /// A reused buffer for rendering an item's line.
    line_buffer: String,
    /// A reused buffer for writing an order's joined item lines.
    details_buffer: String,
    /// Orders whose row must be looked at when the batch ends.
    dirty_orders: Vec<i64>,
    /// Users whose columns may have changed (the user or one of its addresses).
    dirty_users: Vec<i64>,
    dedup: Deduplicator,
    duplicates: u64,
}

/// How many changes (or rows) ahead of the one being applied (or composed)
/// the engine starts loading what it will touch. The state is far larger
/// than the cache, so nearly every slot a change touches is a cache miss;
/// issued this far ahead, a dozen of them are in flight at once.
const LOOKAHEAD: usize = 16;

/// Sizes that the slots cannot tell without a scan.
#[derive(Default, Clone, Copy)]
struct Counts {
    users: usize,
    orders: usize,
    status: usize,
    rows: usize,
}

impl OrderDetailsView {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, order_id: i64) -> Option<&Arc<OrderDetails>> {
        self.orders.get(order_id)?.row.as_ref()
    }

    /// All rows, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &Arc<OrderDetails>> {
        self.orders.values().filter_map(|slot| slot.row.as_ref())
    }

    /// Records skipped because their position had been applied already.
    pub fn duplicates_skipped(&self) -> u64 {
        self.duplicates
    }

    /// Sizes of the input tables, for status and memory reports.
    pub fn state_sizes(&self) -> [(&'static str, usize); 5] {
        [
            ("users", self.counts.users),
            ("addresses", self.addresses.len()),
            ("orders", self.counts.orders),
            ("order_items", self.items.len()),
            ("status_events", self.counts.status),
        ]
    }

    /// The input state, for a snapshot: everything the view is computed
    /// from, nothing derived from it (rows are recomputed on restore).
    pub fn state(&self) -> impl Serialize + '_ {
        StateRef(self)
    }

    /// A view rebuilt from a snapshot's state, with its rows computed; the
    /// deltas insert every row. Deduplication starts afresh: the source
    /// resumes right after the positions the snapshot covers.
    pub fn restore(state: EngineState) -> (Self, Vec<ViewDelta<OrderDetails>>) {
        let mut view = OrderDetailsView::new();
        let EngineState { users, addresses, orders, items, status } = state;
        let address_links: Vec<(i64, i64)> = addresses.iter().map(|a| (a.user_id, a.address_id)).collect();
        let order_links: Vec<(i64, i64)> = orders.iter().map(|o| (o.user_id, o.order_id)).collect();
        view.counts = Counts { users: users.len(), orders: orders.len(), status: status.len(), rows: 0 };
        // Four independent structures: fill them side by side.
        let OrderDetailsView { users: user_slots, addresses: address_map, orders: order_slots, items: item_map, .. } = &mut view;
        rayon::scope(|s| {
            s.spawn(|_| fill_users(user_slots, users, &address_links, &order_links));
            s.spawn(|_| {
                address_map.reserve(addresses.iter().map(|a| a.address_id));
                address_map.extend(addresses.into_iter().map(|a| (a.address_id, a)));
            });
            s.spawn(|_| fill_orders(order_slots, orders, &items, status));
            s.spawn(|_| {
                item_map.reserve(items.iter().map(|i| i.id));
                item_map.extend(items.iter().map(|i| (i.id, i.stored())));
            });
        });
        // Freed in the order they were read, which is the order they lie in.
        drop(items);
        let deltas = view.compose_all();
        (view, deltas)
    }

    /// Every row from scratch, on all cores: a restore recomputes the whole
    /// view, and each row reads only the (complete, unchanging) input tables.
    fn compose_all(&mut self) -> Vec<ViewDelta<OrderDetails>> {
        use rayon::prelude::*;
        let addresses = &self.addresses;
        self.users.par_values_mut().for_each(|slot| slot.full_address = newest_address(slot, addresses));
        let users = &self.users;
        self.orders.par_values_mut().for_each(|slot| slot.row = compose(users, slot, &[]).map(Arc::new));
        let mut deltas: Vec<ViewDelta<OrderDetails>> =
            self.orders.iter().filter_map(|(key, slot)| Some(ViewDelta { key, before: None, after: Some(Arc::clone(slot.row.as_ref()?)) })).collect();
        deltas.sort_unstable_by_key(|d| d.key);
        self.counts.rows = deltas.len();
        deltas
    }

    fn apply(&mut self, change: TableChange) {
        match change {
            TableChange::Users(c) => self.apply_user(c),
            TableChange::Addresses(c) => self.apply_address(c),
            TableChange::Orders(c) => self.apply_order(c),
            TableChange::Items(c) => self.apply_item(c),
            TableChange::Status(event) => self.apply_status(event),
        }
    }

    // Each apply_* retracts `before` and inserts `after`. Retraction goes by
    // primary key, and only when `after` does not replace the same key, so a
    // redelivered or stale `before` cannot leave a ghost row.

    fn apply_user(&mut self, change: RowChange<User>) {
        let after_key = change.after.as_ref().map(|u| u.user_id);
        if let Some(before) = change.before.filter(|b| after_key != Some(b.user_id)) {
            if let Some(slot) = self.users.get_mut(before.user_id) {
                if slot.user.take().is_some() {
                    self.counts.users -= 1;
                    self.dirty_users.push(before.user_id);
                }
            }
        }
        if let Some(after) = change.after {
            let id = after.user_id;
            if self.users.get_or_insert_with(id, UserSlot::default).user.replace(after).is_none() {
                self.counts.users += 1;
            }
            self.dirty_users.push(id);
        }
    }

    fn apply_address(&mut self, change: RowChange<Address>) {
        let after_key = change.after.as_ref().map(|a| a.address_id);
        if let Some(before) = change.before.filter(|b| after_key != Some(b.address_id)) {
            if let Some(old) = self.addresses.remove(before.address_id) {
                self.unlink_address(old.user_id, old.address_id);
            }
        }
        if let Some(after) = change.after {
            let (id, user) = (after.address_id, after.user_id);
            if let Some(old) = self.addresses.insert(id, after) {
                if old.user_id != user {
                    self.unlink_address(old.user_id, id);
                }
            }
            let slot = self.users.get_or_insert_with(user, UserSlot::default);
            link(&mut slot.addresses, id);
            slot.address_changed = true;
            self.dirty_users.push(user);
        }
    }

    fn unlink_address(&mut self, user: i64, address: i64) {
        if let Some(slot) = self.users.get_mut(user) {
            unlink(&mut slot.addresses, address);
            slot.address_changed = true;
            self.dirty_users.push(user);
        }
    }

    fn apply_order(&mut self, change: RowChange<Order>) {
        let after_key = change.after.as_ref().map(|o| o.order_id);
        if let Some(before) = change.before.filter(|b| after_key != Some(b.order_id)) {
            if let Some(old) = self.orders.get_mut(before.order_id).and_then(|slot| slot.order.take()) {
                self.counts.orders -= 1;
                self.unlink_order(old.user_id, old.order_id);
                self.dirty_orders.push(old.order_id);
            }
        }
        if let Some(after) = change.after {
            let (id, user) = (after.order_id, after.user_id);
            let old = self.orders.get_or_insert_with(id, OrderSlot::default).order.replace(after.into());
            self.dirty_orders.push(id);
            match old {
                Some(old) if old.user_id == user => return,
                Some(old) => self.unlink_order(old.user_id, id),
                None => self.counts.orders += 1,
            }
            link(&mut self.users.get_or_insert_with(user, UserSlot::default).orders, id);
        }
    }

    fn unlink_order(&mut self, user: i64, order: i64) {
        if let Some(slot) = self.users.get_mut(user) {
            unlink(&mut slot.orders, order);
            if slot.is_unused() {
                self.users.remove(user);
            }
        }
    }

    fn apply_item(&mut self, change: RowChange<Item>) {
        let after_key = change.after.as_ref().map(|i| i.id);
        if let Some(before) = change.before.filter(|b| after_key != Some(b.id)) {
            if let Some(old) = self.items.remove(before.id) {
                self.unlink_item(&old);
            }
        }
        if let Some(after) = change.after {
            let (id, order, total) = (after.id, after.order_id, line_total(&after));
            let has_line = write_item_line(&mut self.line_buffer, &after, total);
            let line = has_line.then_some(self.line_buffer.as_str());
            let mut item = ItemEntry { id, order_id: order, line_total: total, line: None };
            match order {
                Some(order) => {
                    let slot = self.orders.get_or_insert_with(order, OrderSlot::default);
                    slot.items.upsert(id, line, total, &mut self.details_buffer);
                    slot.items_changed = true;
                    self.dirty_orders.push(order);
                }
                None => item.line = line.map(Box::from),
            }
            if let Some(old) = self.items.insert(id, item) {
                if old.order_id != order {
                    self.unlink_item(&old);
                }
            }
        }
    }

    fn unlink_item(&mut self, item: &ItemEntry) {
        let Some(order) = item.order_id else { return };
        if let Some(slot) = self.orders.get_mut(order) {
            slot.items.remove(item.id, &mut self.details_buffer);
            slot.items_changed = true;
            self.dirty_orders.push(order);
        }
    }

    fn apply_status(&mut self, event: StatusEvent) {
        let slot = self.orders.get_or_insert_with(event.order_id, OrderSlot::default);
        let newer = slot.status.as_ref().is_none_or(|old| event.recency() > old.recency());
        if newer {
            self.counts.status += usize::from(slot.status.is_none());
            slot.status = Some(LatestStatus { id: event.id, updated_at: event.updated_at, status: event.status });
            self.dirty_orders.push(event.order_id);
        }
    }

    /// Every item as a snapshot holds it, with its line: those in an order's
    /// list order by order (reading each list once, in the order the slots
    /// lie in memory), then those without order. Looking each item's line up
    /// in its order instead made a snapshot of 1M orders 1.5 s slower.
    fn item_records(&self) -> impl Iterator<Item = ItemRecord<'_>> {
        let listed = self.orders.iter().flat_map(|(order, slot)| {
            slot.items.entries().map(move |(id, line, line_total)| ItemRecord { id, order_id: Some(order), line_total, line })
        });
        let unlisted = self.items.values().filter(|item| item.order_id.is_none());
        listed.chain(unlisted.map(|item| ItemRecord { id: item.id, order_id: None, line_total: item.line_total, line: item.line.as_deref() }))
    }

    /// Starts loading the slots that applying `change` will touch.
    fn prefetch_for(&self, change: &TableChange) {
        match change {
            TableChange::Users(c) => c.rows().for_each(|u| self.users.prefetch(u.user_id)),
            TableChange::Addresses(c) => c.rows().for_each(|a| {
                self.addresses.prefetch(a.address_id);
                self.users.prefetch(a.user_id);
            }),
            TableChange::Orders(c) => {
                c.rows().for_each(|o| self.orders.prefetch(o.order_id));
                // A new order, or one that moves, is linked to (and from) its user.
                if c.before.as_ref().map(|o| o.user_id) != c.after.as_ref().map(|o| o.user_id) {
                    c.rows().for_each(|o| self.users.prefetch(o.user_id));
                }
            }
            TableChange::Items(c) => c.rows().for_each(|i| {
                self.items.prefetch(i.id);
                if let Some(order) = i.order_id {
                    self.orders.prefetch(order);
                }
            }),
            TableChange::Status(e) => self.orders.prefetch(e.order_id),
        }
    }

    /// Starts loading, once the slots that applying `change` touches are in
    /// the cache, the heap memory behind them that it will edit: an order's
    /// joined item lines.
    fn prefetch_behind_slots_for(&self, change: &TableChange) {
        let TableChange::Items(c) = change else { return };
        for item in c.rows() {
            if let Some(slot) = item.order_id.and_then(|order| self.orders.get(order)) {
                slot.items.prefetch_heap();
            }
        }
    }

    /// Starts loading what composing order `key`'s row will read, once its
    /// slot is in the cache: the previous row, and the user's slot when the
    /// user's columns will be taken from it (`dirty_users` ascending).
    fn prefetch_row_of(&self, key: i64, dirty_users: &[i64]) {
        let Some(slot) = self.orders.get(key) else { return };
        if let Some(row) = &slot.row {
            prefetch(Arc::as_ptr(row));
        }
        if let Some(order) = &slot.order {
            if slot.row.is_none() || dirty_users.binary_search(&order.user_id).is_ok() {
                self.users.prefetch(order.user_id);
            }
        }
    }

    /// Starts loading the shared text of order `key`'s previous row that its
    /// next row will share (the address and the item lines, whose reference
    /// counts composing increments), once that row is in the cache.
    fn prefetch_shared_text_of(&self, key: i64) {
        let Some(row) = self.orders.get(key).and_then(|slot| slot.row.as_deref()) else { return };
        for text in [&row.full_address, &row.order_items_details].into_iter().flatten() {
            prefetch_text(text);
        }
    }

    /// Brings every dirty user's address up to date, then recomposes every
    /// dirty order (and every order of a dirty user) and returns the rows
    /// that really changed.
    fn flush_dirty(&mut self) -> Vec<ViewDelta<OrderDetails>> {
        let mut users = std::mem::take(&mut self.dirty_users);
        users.sort_unstable();
        users.dedup();
        for (i, &user) in users.iter().enumerate() {
            if let Some(&ahead) = users.get(i + LOOKAHEAD) {
                self.users.prefetch(ahead);
            }
            let Some(slot) = self.users.get_mut(user) else { continue };
            if std::mem::take(&mut slot.address_changed) {
                slot.full_address = newest_address(slot, &self.addresses);
            }
            self.dirty_orders.extend_from_slice(&slot.orders);
            if slot.is_unused() {
                self.users.remove(user);
            }
        }

        let mut keys = std::mem::take(&mut self.dirty_orders);
        keys.sort_unstable();
        keys.dedup();
        let mut deltas = Vec::with_capacity(keys.len());
        // Three stages of loads run ahead of the composing: the slot, then
        // (once it is in the cache) the previous row, then its shared text.
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + LOOKAHEAD) {
                self.orders.prefetch(ahead);
            }
            if let Some(&ahead) = keys.get(i + LOOKAHEAD / 2) {
                self.prefetch_row_of(ahead, &users);
            }
            if let Some(&ahead) = keys.get(i + LOOKAHEAD / 4) {
                self.prefetch_shared_text_of(ahead);
            }
            let Some(slot) = self.orders.get_mut(key) else { continue };
            let new = compose(&self.users, slot, &users);
            slot.items_changed = false;
            match (&slot.row, new) {
                (None, None) => {}
                (Some(old), Some(new)) if **old == new => {}
                (_, Some(new)) => {
                    let new = Arc::new(new);
                    let before = slot.row.replace(Arc::clone(&new));
                    self.counts.rows += usize::from(before.is_none());
                    deltas.push(ViewDelta { key, before, after: Some(new) });
                }
                (Some(_), None) => {
                    let before = slot.row.take();
                    self.counts.rows -= 1;
                    deltas.push(ViewDelta { key, before, after: None });
                }
            }
            if slot.is_unused() {
                self.orders.remove(key);
            }
        }
        keys.clear();
        self.dirty_orders = keys;
        users.clear();
        self.dirty_users = users;
        deltas
    }
}

/// The formatted newest address of a user, if it has one.
fn newest_address(slot: &UserSlot, addresses: &IdMap<Address>) -> Option<Text> {
    slot.addresses.last().and_then(|&id| addresses.get(id)).map(|a| format_address(a).into())
}

/// Composes an order's row from its slot, reusing the parts of its previous
/// row that this batch did not touch: the user's columns unless the user is
/// in `dirty_users` (ascending) or the order moved, the items' columns unless
/// an item changed.
fn compose(users: &IdMap<UserSlot>, slot: &OrderSlot, dirty_users: &[i64]) -> Option<OrderDetails> {
    let order = slot.order.as_ref()?;
    let old = slot.row.as_deref();
    let user = match old {
        Some(old) if old.user_id == order.user_id && dirty_users.binary_search(&order.user_id).is_err() => UserPart::of_row(old),
        _ => users.get(order.user_id)?.part()?,
    };
    let items = match old {
        Some(old) if !slot.items_changed => ItemsPart::of_row(old),
        _ => ItemsPart::of_list(&slot.items),
    };
    let (order_status, last_order_update) = latest_status(order, slot.status.as_ref());
    Some(OrderDetails {
        order_id: order.order_id,
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

/// A restore's user slots: the users and the ids of their addresses and
/// orders, as `(user, child)` pairs.
fn fill_users(slots: &mut IdMap<UserSlot>, users: Vec<User>, addresses: &[(i64, i64)], orders: &[(i64, i64)]) {
    slots.reserve(users.iter().map(|u| u.user_id));
    for user in users {
        let id = user.user_id;
        slots.get_or_insert_with(id, UserSlot::default).user = Some(user);
    }
    for &(user, address) in addresses {
        link(&mut slots.get_or_insert_with(user, UserSlot::default).addresses, address);
    }
    for &(user, order) in orders {
        link(&mut slots.get_or_insert_with(user, UserSlot::default).orders, order);
    }
}

/// A restore's order slots: the orders, their items' lists (a snapshot
/// holds the items grouped by order, so each list is appended to) and their
/// newest status events.
fn fill_orders(slots: &mut IdMap<OrderSlot>, orders: Vec<OrderEntry>, items: &[ItemEntry], status: AHashMap<i64, LatestStatus>) {
    slots.reserve(orders.iter().map(|o| o.order_id));
    for order in orders {
        let id = order.order_id;
        slots.get_or_insert_with(id, OrderSlot::default).order = Some(order);
    }
    // A snapshot lists the items of an order one after another: each list
    // is written once.
    let mut scratch = String::new();
    for run in items.chunk_by(|a, b| a.order_id == b.order_id) {
        let Some(order) = run[0].order_id else { continue };
        let lines = run.iter().map(|item| (item.id, item.line.as_deref(), item.line_total));
        slots.get_or_insert_with(order, OrderSlot::default).items.upsert_all(lines, &mut scratch);
    }
    for (order, latest) in status {
        slots.get_or_insert_with(order, OrderSlot::default).status = Some(latest);
    }
}

/// The engine's input state as read back from a snapshot.
#[derive(Deserialize)]
pub struct EngineState {
    users: Vec<User>,
    addresses: Vec<Address>,
    orders: Vec<OrderEntry>,
    items: Vec<ItemEntry>,
    status: AHashMap<i64, LatestStatus>,
}

/// [`EngineState`]'s encoding written from a live view, so a snapshot copies
/// nothing: the same fields in the same order.
struct StateRef<'a>(&'a OrderDetailsView);

impl Serialize for StateRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let v = self.0;
        let users = Counted(v.counts.users, || v.users.values().filter_map(|slot| slot.user.as_ref()));
        let orders = Counted(v.counts.orders, || v.orders.values().filter_map(|slot| slot.order.as_ref()));
        let status = StatusMap(v);
        let mut st = s.serialize_struct("EngineState", 5)?;
        st.serialize_field("users", &users)?;
        st.serialize_field("addresses", &Counted(v.addresses.len(), || v.addresses.values()))?;
        st.serialize_field("orders", &orders)?;
        // Every item with an order is in that order's list, so this is all of them.
        st.serialize_field("items", &Counted(v.items.len(), || v.item_records()))?;
        st.serialize_field("status", &status)?;
        st.end()
    }
}

/// A sequence of `len` elements, produced by a function (formats such as
/// postcard write the length first).
struct Counted<F>(usize, F);

impl<F, I> Serialize for Counted<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0))?;
        for element in (self.1)() {
            seq.serialize_element(&element)?;
        }
        seq.end()
    }
}

/// The newest status event per order id, as a map.
struct StatusMap<'a>(&'a OrderDetailsView);

impl Serialize for StatusMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.counts.status))?;
        for (order, slot) in self.0.orders.iter() {
            if let Some(latest) = &slot.status {
                map.serialize_entry(&order, latest)?;
            }
        }
        map.end()
    }
}

impl IncrementalView for OrderDetailsView {
    type Row = OrderDetails;

    fn apply_batch(&mut self, changes: Vec<Change>) -> Vec<ViewDelta<OrderDetails>> {
        let mut changes = changes.into_iter();
        for ahead in changes.as_slice().iter().take(LOOKAHEAD) {
            self.prefetch_for(&ahead.data);
        }
        while let Some(change) = changes.next() {
            if let Some(ahead) = changes.as_slice().get(LOOKAHEAD - 1) {
                self.prefetch_for(&ahead.data);
            }
            if let Some(ahead) = changes.as_slice().get(LOOKAHEAD / 2 - 1) {
                self.prefetch_behind_slots_for(&ahead.data);
            }
            if self.dedup.accept(change.pos) {
                self.apply(change.data);
            } else {
                self.duplicates += 1;
            }
        }
        self.flush_dirty()
    }

    fn len(&self) -> usize {
        self.counts.rows
    }
}

/// `street, city, state, postal_code, country`, absent parts left out with
/// their separator (SQL's `CONCAT_WS`).
pub fn format_address(a: &Address) -> String {
    let mut out = String::new();
    let parts = [Some(&a.street), Some(&a.city), a.state.as_ref(), a.postal_code.as_ref(), Some(&a.country)];
    // CONCAT_WS puts the separator after an empty part too; only NULLs go.
    for (i, part) in parts.into_iter().flatten().enumerate() {
        if i > 0 {
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
    use rand::{Rng, SeedableRng};

    fn user(id: i64) -> User {
        User { user_id: id, name: smol_str::format_smolstr!("User {id}"), email: smol_str::format_smolstr!("u{id}@example.com"), phone: None }
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
        Item { id, order_id: Some(order_id), name: Some(smol_str::format_smolstr!("Item {id}")), quantity: Some(qty), price: Decimal::new(cents, 2) }
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
        assert_eq!(deltas[0].after.as_ref().unwrap().user_name.as_str(), "User 7");
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
        let ev = |id, secs: f64, status: &str| StatusEvent { id, order_id: 1, status: status.into(), updated_at: Timestamp::from_unix_seconds(secs) };
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
    fn decimals_are_written_as_their_display_writes_them() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut cases = vec![Decimal::new(0, 2), -Decimal::new(0, 2), Decimal::new(10, 2), Decimal::new(-1, 28), Decimal::MAX, Decimal::MIN];
        for _ in 0..20_000 {
            let mantissa = rng.random_range(-(1i128 << 95)..(1i128 << 95)) >> rng.random_range(0..96);
            cases.push(Decimal::from_i128_with_scale(mantissa, rng.random_range(0..=28)));
        }
        for d in cases {
            let mut written = String::new();
            push_decimal(&mut written, d);
            assert_eq!(written, d.to_string(), "{d:?}");
        }
        let pen = Item { id: 1, order_id: None, name: Some("Pen".into()), quantity: Some(3), price: Decimal::new(10, 2) };
        let mut line = String::from("leftover");
        assert!(write_item_line(&mut line, &pen, line_total(&pen)));
        assert_eq!(line, "Pen (Qty: 3, Price: 0.10, Total: 0.30)");
        assert!(!write_item_line(&mut line, &Item { quantity: None, ..pen }, None));
    }

    /// Each expected text is what MariaDB 10.11 prints for `quantity * price`
    /// with `quantity INT` and `price DECIMAL(10,2)` (and PostgreSQL for
    /// `int * numeric(10,2)`): the product's scale is the sum of the scales,
    /// and zero has no sign.
    #[test]
    fn line_totals_have_the_scale_sql_gives_a_product() {
        let cases = [
            (3, "0.00", "0.00"),
            (0, "1.50", "0.00"),
            (-1, "0.00", "0.00"),
            (-1, "-0.00", "0.00"),
            (3, "-2.50", "-7.50"),
            (2147483647, "99999999.99", "214748364678525163.53"),
            (-2147483648, "99999999.99", "-214748364778525163.52"),
        ];
        for (quantity, price, expected) in cases {
            let item = Item { id: 1, order_id: None, name: Some("X".into()), quantity: Some(quantity), price: price.parse().unwrap() };
            let total = line_total(&item).unwrap();
            assert_eq!(total.to_string(), expected, "{quantity} * {price}");
            let mut line = String::new();
            assert!(write_item_line(&mut line, &item, Some(total)));
            assert!(line.ends_with(&format!("Total: {expected})")), "{line}");
        }
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
        // As CONCAT_WS: an empty part keeps its separator.
        let empty_street = Address { street: "".into(), ..a };
        assert_eq!(format_address(&empty_street), ", Springfield, 12345, USA");
    }
}
