//! The shop's typed changes as rows of the sources `views/shop.sql`
//! declares, and `order_details_mv` rows as the SQL engine's rows: the glue
//! that runs the hand-written engine and the SQL-defined view side by side
//! (tests and `cdcview bench engine --engine sql`) until the decoders emit
//! rows by column name.

use cdcview_engine::{Dataflow, Row, SourceChange, Value};

use super::OrderDetails;
use crate::change::{Change, RowChange, TableChange, Text, Timestamp};

fn text(t: &Text) -> Value {
    Value::Text(t.clone())
}

fn opt_text(t: &Option<Text>) -> Value {
    t.as_ref().map_or(Value::Null, text)
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::Timestamp(t.0))
}

/// The positions of the shop's sources in a dataflow compiled from
/// `views/shop.sql`.
pub struct ShopSources {
    users: usize,
    addresses: usize,
    orders: usize,
    items: usize,
    updates: usize,
    unplaced_events: std::cell::Cell<i64>,
}

impl ShopSources {
    pub fn of(flow: &Dataflow) -> Option<Self> {
        Some(ShopSources {
            users: flow.source("users")?,
            addresses: flow.source("addresses")?,
            orders: flow.source("orders")?,
            items: flow.source("order_items")?,
            updates: flow.source("order_updates")?,
            unplaced_events: std::cell::Cell::new(0),
        })
    }

    /// One typed change as source changes: the row with `before`'s key goes
    /// unless `after` replaces it, then `after` is the row of its key.
    /// The key of a status event: its source position, or (changes made up
    /// without one) the next number.
    fn event_key(&self, pos: Option<crate::change::SourcePos>) -> Row {
        match pos {
            Some(p) => vec![Value::Int(p.stream.into()), Value::Int(p.offset)],
            None => {
                let n = self.unplaced_events.get() + 1;
                self.unplaced_events.set(n);
                vec![Value::Int(-1), Value::Int(n)]
            }
        }
    }

    pub fn changes(&self, change: Change, out: &mut Vec<SourceChange>) {
        fn keyed<T>(out: &mut Vec<SourceChange>, source: usize, change: RowChange<T>, key: impl Fn(&T) -> i64, row: impl Fn(&T) -> Row) {
            let after_key = change.after.as_ref().map(&key);
            if let Some(before) = change.before.filter(|b| Some(key(b)) != after_key) {
                out.push(SourceChange { source, key: vec![Value::Int(key(&before))], after: None });
            }
            if let Some(after) = change.after {
                out.push(SourceChange { source, key: vec![Value::Int(key(&after))], after: Some(row(&after)) });
            }
        }
        match change.data {
            TableChange::Users(c) => {
                keyed(out, self.users, c, |u| u.user_id, |u| vec![Value::Int(u.user_id), text(&u.name), text(&u.email), opt_text(&u.phone)])
            }
            TableChange::Addresses(c) => keyed(
                out,
                self.addresses,
                c,
                |a| a.address_id,
                |a| {
                    vec![
                        Value::Int(a.address_id),
                        Value::Int(a.user_id),
                        text(&a.street),
                        text(&a.city),
                        opt_text(&a.state),
                        opt_text(&a.postal_code),
                        text(&a.country),
                    ]
                },
            ),
            TableChange::Orders(c) => keyed(
                out,
                self.orders,
                c,
                |o| o.order_id,
                |o| {
                    vec![
                        Value::Int(o.order_id),
                        Value::Int(o.user_id),
                        Value::Decimal(o.total),
                        time(o.order_date),
                        opt_text(&o.order_status),
                        time(o.updated_date),
                    ]
                },
            ),
            TableChange::Items(c) => keyed(
                out,
                self.items,
                c,
                |i| i.id,
                |i| {
                    vec![
                        Value::Int(i.id),
                        i.order_id.map_or(Value::Null, Value::Int),
                        opt_text(&i.name),
                        i.quantity.map_or(Value::Null, Value::Int),
                        Value::Decimal(i.price),
                    ]
                },
            ),
            TableChange::Status(e) => out.push(SourceChange {
                source: self.updates,
                // Each event is a row of its own: named by where it was read.
                key: self.event_key(change.pos),
                after: Some(vec![Value::Int(e.id), Value::Int(e.order_id), text(&e.status), Value::Double(e.updated_at.0 as f64 / 1_000_000.0)]),
            }),
        }
    }
}

/// A row of the SQL view as the hand-written view's row, or why it is not one.
pub fn details_of(row: &Row) -> Result<OrderDetails, String> {
    let int = |i: usize| match &row[i] {
        Value::Int(v) => Ok(*v),
        other => Err(format!("column {i}: {other:?} is not an integer")),
    };
    let money = |i: usize| match &row[i] {
        Value::Decimal(d) => Ok(*d),
        other => Err(format!("column {i}: {other:?} is not a decimal")),
    };
    let text = |i: usize| match &row[i] {
        Value::Text(t) => Ok(Some(t.clone())),
        Value::Null => Ok(None),
        other => Err(format!("column {i}: {other:?} is not text")),
    };
    let time = |i: usize| match &row[i] {
        Value::Timestamp(t) => Ok(Some(Timestamp(*t))),
        Value::Null => Ok(None),
        other => Err(format!("column {i}: {other:?} is not a timestamp")),
    };
    let required = |i: usize| text(i)?.ok_or_else(|| format!("column {i} is NULL"));
    if row.len() != 13 {
        return Err(format!("{} columns, not 13", row.len()));
    }
    Ok(OrderDetails {
        order_id: int(0)?,
        user_id: int(1)?,
        total: money(2)?,
        order_date: time(3)?,
        user_name: required(4)?,
        user_email: required(5)?,
        user_phone: text(6)?,
        full_address: text(7)?,
        order_items_details: text(8)?,
        item_count: int(9)?,
        items_total: money(10)?,
        order_status: text(11)?,
        last_order_update: time(12)?,
    })
}

/// A row of the hand-written view as the SQL view's row.
pub fn view_row(r: &OrderDetails) -> Row {
    vec![
        Value::Int(r.order_id),
        Value::Int(r.user_id),
        Value::Decimal(r.total),
        time(r.order_date),
        text(&r.user_name),
        text(&r.user_email),
        opt_text(&r.user_phone),
        opt_text(&r.full_address),
        opt_text(&r.order_items_details),
        Value::Int(r.item_count),
        Value::Decimal(r.items_total),
        opt_text(&r.order_status),
        time(r.last_order_update),
    ]
}
