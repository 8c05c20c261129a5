//! The shop's typed changes as rows of the SQL sources declared over the
//! shop's topics (bound by topic and column name), and `order_details_mv`
//! rows as the SQL engine's rows: the glue between the typed decoders and
//! the SQL engine (the service's SQL views, tests, `cdcview bench engine
//! --engine sql`) until the decoders emit rows by column name.

use cdcview_engine::types::SqlType;
use cdcview_engine::{Dataflow, Key, Row, SharedRow, SourceChange, Value};
use cdcview_sql::{Catalog, Kind};

use super::OrderDetails;
use crate::change::{Change, RowChange, TableChange, Text, Timestamp};
use crate::decode::Input;

fn text(t: &Text) -> Value {
    Value::text(t)
}

fn opt_text(t: &Option<Text>) -> Value {
    t.as_ref().map_or(Value::Null, text)
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::Timestamp(t.0))
}

/// The columns each shop table's decoder provides, in the order
/// [`ShopSources`] builds rows: name, type, and whether it may be NULL.
pub fn table_columns(input: Input) -> &'static [(&'static str, SqlType, bool)] {
    const MONEY: SqlType = SqlType::Decimal { scale: Some(2) };
    match input {
        Input::Users => {
            &[("user_id", SqlType::Int, false), ("name", SqlType::Text, false), ("email", SqlType::Text, false), ("phone", SqlType::Text, true)]
        }
        Input::Addresses => &[
            ("address_id", SqlType::Int, false),
            ("user_id", SqlType::Int, false),
            ("street", SqlType::Text, false),
            ("city", SqlType::Text, false),
            ("state", SqlType::Text, true),
            ("postal_code", SqlType::Text, true),
            ("country", SqlType::Text, false),
        ],
        Input::Orders => &[
            ("order_id", SqlType::Int, false),
            ("user_id", SqlType::Int, false),
            ("total", MONEY, false),
            ("order_date", SqlType::Timestamp, true),
            ("order_status", SqlType::Text, true),
            ("updated_date", SqlType::Timestamp, true),
        ],
        Input::OrderItems => &[
            ("id", SqlType::Int, false),
            ("order_id", SqlType::Int, true),
            ("name", SqlType::Text, true),
            ("quantity", SqlType::Int, true),
            ("price", MONEY, false),
        ],
        Input::OrderUpdates => &[
            ("id", SqlType::Int, false),
            ("order_id", SqlType::Int, false),
            ("status", SqlType::Text, false),
            ("updated_at", SqlType::Double, false),
        ],
        Input::Transactions => &[],
    }
}

/// Where one shop table's rows go in a dataflow.
#[derive(Clone, Debug)]
struct Binding {
    source: usize,
    /// For each declared column, the table's column it is; `None`: all of
    /// them, in the table's order.
    columns: Option<Vec<usize>>,
    /// Events only: the declared key's columns (of the declared row); `None`:
    /// every event is a row of its own.
    event_key: Option<Vec<usize>>,
}

impl Binding {
    /// The declared row of a table's row, made once as the engine keeps it.
    fn row<const N: usize>(&self, row: [Value; N]) -> SharedRow {
        match &self.columns {
            None => SharedRow::from(row),
            Some(columns) => columns.iter().map(|&c| row[c].clone()).collect(),
        }
    }
}

/// Bits of a packed event key that hold the offset.
const OFFSET_BITS: u32 = 40;

/// A position as one integer, `stream << 40 | offset`, when the offset
/// fits in 40 bits and the stream in the 23 above them (the key stays
/// positive, apart from the negative keys of unplaced events).
fn packed_position(p: crate::change::SourcePos) -> Option<i64> {
    let fits = (0..1 << OFFSET_BITS).contains(&p.offset) && p.stream < 1 << (63 - OFFSET_BITS);
    fits.then(|| i64::from(p.stream) << OFFSET_BITS | p.offset)
}

/// The shop's typed changes as rows of the sources a dataflow reads.
pub struct ShopSources {
    /// By [`Input::ALL`]'s order; `None` for a table no view reads.
    bindings: [Option<Binding>; 5],
    unplaced_events: std::cell::Cell<i64>,
}

fn slot(input: Input) -> Option<usize> {
    Input::ALL.iter().position(|&i| i == input)
}

impl ShopSources {
    /// The sources of `views/shop.sql`, by name, with the tables' columns in
    /// their order; `None` when one is missing.
    pub fn of(flow: &Dataflow) -> Option<Self> {
        let bind = |name: &str| Some(Binding { source: flow.source(name)?, columns: None, event_key: None });
        Some(ShopSources {
            bindings: [bind("users")?, bind("addresses")?, bind("orders")?, bind("order_items")?, bind("order_updates")?].map(Some),
            unplaced_events: std::cell::Cell::new(0),
        })
    }

    /// Binds every source the dataflow reads to the shop table whose topic it
    /// declares, column by column by name. `topics` are the topics this
    /// service reads and what each carries. The error says which source and
    /// column cannot be bound, and why.
    pub fn bind(flow: &Dataflow, catalog: &Catalog, topics: &[(String, Input)]) -> Result<Self, String> {
        let mut bindings: [Option<Binding>; 5] = Default::default();
        for (source, name) in flow.read_sources() {
            let relation = catalog.get(name).ok_or_else(|| format!("source {name} is not declared"))?;
            let Kind::Source(declared) = &relation.kind else { return Err(format!("{name} is not a source")) };
            let served: Vec<&str> = topics.iter().filter(|(_, i)| slot(*i).is_some()).map(|(t, _)| t.as_str()).collect();
            let input = topics.iter().find(|(t, _)| *t == declared.topic).map(|(_, i)| *i).filter(|i| slot(*i).is_some()).ok_or_else(|| {
                format!("source {name} reads topic {}, which this service does not consume (it reads {})", declared.topic, served.join(", "))
            })?;
            let table = table_columns(input);
            let mut columns = Vec::with_capacity(relation.columns.len());
            for column in &relation.columns {
                let at = table.iter().position(|(n, ..)| *n == column.name).ok_or_else(|| {
                    let known: Vec<&str> = table.iter().map(|(n, ..)| *n).collect();
                    format!("source {name}: topic {} has no column {} (it has {})", declared.topic, column.name, known.join(", "))
                })?;
                let (_, ty, nullable) = table[at];
                if column.ty != ty {
                    return Err(format!("source {name}: column {} is {} in topic {}, not {}", column.name, ty, declared.topic, column.ty));
                }
                if nullable && !column.nullable {
                    return Err(format!(
                        "source {name}: column {} may be NULL in topic {}; declare it without NOT NULL",
                        column.name, declared.topic
                    ));
                }
                columns.push(at);
            }
            let key_names: Option<Vec<&str>> = relation.key.as_ref().map(|k| k.iter().map(|&c| relation.columns[c].name.as_str()).collect());
            let event_key = if input == Input::OrderUpdates {
                relation.key.clone()
            } else {
                let primary = table[0].0;
                if key_names.as_deref() != Some(&[primary][..]) {
                    return Err(format!("source {name}: topic {} is keyed by {primary}; declare {primary} as its PRIMARY KEY", declared.topic));
                }
                None
            };
            let identity = columns.iter().copied().eq(0..table.len());
            let slot = slot(input).expect("filtered above");
            if bindings[slot].is_some() {
                return Err(format!("source {name}: another source already reads topic {}", declared.topic));
            }
            bindings[slot] = Some(Binding { source, columns: (!identity).then_some(columns), event_key });
        }
        Ok(ShopSources { bindings, unplaced_events: std::cell::Cell::new(0) })
    }

    /// The key of a status event: its source position, or (changes made up
    /// without one) the next number, below zero.
    ///
    /// A position is one integer, the stream above the offset's 40 bits,
    /// wherever both fit (a trillion records per partition): the source
    /// keeps every event, and a key of two values took a heap block of its
    /// own and a hash map's wide slot per event; one integer sits in the
    /// slot. A position that does not fit keeps both values, a key of
    /// another shape, so keys stay distinct.
    fn event_key(&self, pos: Option<crate::change::SourcePos>) -> Key {
        match pos {
            Some(p) => match packed_position(p) {
                Some(key) => Key::One(Value::Int(key)),
                None => Key::from_slice(&[Value::Int(p.stream.into()), Value::Int(p.offset)]),
            },
            None => {
                let n = self.unplaced_events.get() + 1;
                self.unplaced_events.set(n);
                Key::One(Value::Int(-n))
            }
        }
    }

    /// One typed change as source changes: the row with `before`'s key goes
    /// unless `after` replaces it, then `after` is the row of its key.
    /// Changes of a table no view reads are left out.
    pub fn changes(&self, change: Change, out: &mut Vec<SourceChange>) {
        fn keyed<T, const N: usize>(
            out: &mut Vec<SourceChange>,
            binding: &Binding,
            change: RowChange<T>,
            key: impl Fn(&T) -> i64,
            row: impl Fn(&T) -> [Value; N],
        ) {
            let after_key = change.after.as_ref().map(&key);
            if let Some(before) = change.before.filter(|b| Some(key(b)) != after_key) {
                out.push(SourceChange { source: binding.source, key: Key::One(Value::Int(key(&before))), after: None });
            }
            if let Some(after) = change.after {
                out.push(SourceChange { source: binding.source, key: Key::One(Value::Int(key(&after))), after: Some(binding.row(row(&after))) });
            }
        }
        let input = match &change.data {
            TableChange::Users(_) => Input::Users,
            TableChange::Addresses(_) => Input::Addresses,
            TableChange::Orders(_) => Input::Orders,
            TableChange::Items(_) => Input::OrderItems,
            TableChange::Status(_) => Input::OrderUpdates,
        };
        let Some(b) = slot(input).and_then(|s| self.bindings[s].as_ref()) else { return };
        match change.data {
            TableChange::Users(c) => keyed(out, b, c, |u| u.user_id, |u| [Value::Int(u.user_id), text(&u.name), text(&u.email), opt_text(&u.phone)]),
            TableChange::Addresses(c) => keyed(
                out,
                b,
                c,
                |a| a.address_id,
                |a| {
                    [
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
                b,
                c,
                |o| o.order_id,
                |o| {
                    [
                        Value::Int(o.order_id),
                        Value::Int(o.user_id),
                        Value::decimal(o.total),
                        time(o.order_date),
                        opt_text(&o.order_status),
                        time(o.updated_date),
                    ]
                },
            ),
            TableChange::Items(c) => keyed(
                out,
                b,
                c,
                |i| i.id,
                |i| {
                    [
                        Value::Int(i.id),
                        i.order_id.map_or(Value::Null, Value::Int),
                        opt_text(&i.name),
                        i.quantity.map_or(Value::Null, Value::Int),
                        Value::decimal(i.price),
                    ]
                },
            ),
            TableChange::Status(e) => {
                let row = b.row([Value::Int(e.id), Value::Int(e.order_id), text(&e.status), Value::Double(e.updated_at.0 as f64 / 1_000_000.0)]);
                // Each event is a row of its own, named by where it was read,
                // unless the source declares a key.
                let key = match &b.event_key {
                    Some(key) => Key::of(&row, key),
                    None => self.event_key(change.pos),
                };
                out.push(SourceChange { source: b.source, key, after: Some(row) });
            }
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
        Value::Decimal(d) => Ok(d.get()),
        other => Err(format!("column {i}: {other:?} is not a decimal")),
    };
    let text = |i: usize| match &row[i] {
        Value::Text(t) => Ok(Some(Text::new(t.as_str()))),
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
        Value::decimal(r.total),
        time(r.order_date),
        text(&r.user_name),
        text(&r.user_email),
        opt_text(&r.user_phone),
        opt_text(&r.full_address),
        opt_text(&r.order_items_details),
        Value::Int(r.item_count),
        Value::decimal(r.items_total),
        opt_text(&r.order_status),
        time(r.last_order_update),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::SourcePos;

    #[test]
    fn event_positions_are_keys_of_one_integer_where_they_fit_and_stay_distinct() {
        let at = |stream, offset| SourcePos { stream, offset };
        assert_eq!(packed_position(at(0, 7)), Some(7));
        assert_eq!(packed_position(at(4, 7)), Some((4 << 40) + 7));
        // Neighbours across the offset's bits and the stream's do not meet.
        assert_ne!(packed_position(at(1, 0)), packed_position(at(0, (1 << 40) - 1)));
        assert_eq!(packed_position(at(0, 1 << 40)), None, "an offset beyond 40 bits");
        assert_eq!(packed_position(at(1 << 23, 0)), None, "a stream beyond 23 bits");
        assert_eq!(packed_position(at((1 << 23) - 1, (1 << 40) - 1)), Some(i64::MAX));
        assert_eq!(packed_position(at(0, -1)), None);
    }

    #[test]
    fn every_event_gets_a_key_of_its_own() {
        let sources = ShopSources { bindings: [None, None, None, None, None], unplaced_events: std::cell::Cell::new(0) };
        let at = |stream, offset| Some(SourcePos { stream, offset });
        let keys = [
            sources.event_key(at(0, 5)),
            sources.event_key(at(1, 5)),
            sources.event_key(at(0, 1 << 40)),
            sources.event_key(at(1, 1 << 40)),
            sources.event_key(None),
            sources.event_key(None),
        ];
        assert_eq!(keys[0], Key::One(Value::Int(5)));
        assert_eq!(keys[2].as_slice(), [Value::Int(0), Value::Int(1 << 40)]);
        assert_eq!(keys[4], Key::One(Value::Int(-1)));
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        // Read again, a position names the same event.
        assert_eq!(sources.event_key(at(1, 5)), keys[1]);
    }

    #[test]
    fn a_declared_event_key_makes_a_later_event_of_that_key_replace_the_earlier() {
        // Columns in another order than the topic's: bound by name.
        let sql = "CREATE TABLE order_updates (order_id BIGINT NOT NULL, id BIGINT PRIMARY KEY, status TEXT NOT NULL, \
                   updated_at DOUBLE PRECISION NOT NULL) WITH (connector = 'kafka', topic = 'order_updates', format = 'json'); \
                   CREATE MATERIALIZED VIEW statuses AS SELECT id, order_id, status FROM order_updates;";
        let mut catalog = Catalog::new();
        catalog.load(sql).expect("the declarations load");
        let mut flow = Dataflow::new(&catalog.specs());
        let sources = ShopSources::bind(&flow, &catalog, &[("order_updates".to_string(), Input::OrderUpdates)]).expect("the source binds");
        let event = |offset, id, order_id, status: &str| Change {
            pos: Some(SourcePos { stream: 0, offset }),
            data: TableChange::Status(crate::change::StatusEvent {
                id,
                order_id,
                status: Text::new(status),
                updated_at: Timestamp(offset * 1_000_000),
            }),
        };
        let mut changes = Vec::new();
        for change in [event(0, 1, 10, "paid"), event(1, 2, 10, "shipped"), event(2, 1, 11, "late")] {
            sources.changes(change, &mut changes);
        }
        assert_eq!(changes.iter().map(|c| c.key.clone()).collect::<Vec<_>>(), [1, 2, 1].map(|id| Key::One(Value::Int(id))));
        flow.apply(changes);
        let view = &flow.views()[0];
        let mut rows: Vec<Vec<Value>> = view.rows().map(<[Value]>::to_vec).collect();
        rows.sort();
        let row = |id, order_id, status: &str| vec![Value::Int(id), Value::Int(order_id), Value::text(status)];
        assert_eq!(rows, [row(1, 11, "late"), row(2, 10, "shipped")], "event 1 read again replaces its row, by the declared key");
    }
}
