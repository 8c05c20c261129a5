//! `order_details_mv` in differential-dataflow, fed the same generated state
//! and change stream as `cdcview bench engine`, for a like-for-like ratio.
//!
//! Run: `cargo run --release --manifest-path benches/differential/Cargo.toml`
//! (same defaults and flags as `cdcview bench engine`: --users, --orders,
//! --items, --events, --changes, --batch, --seed).
//!
//! The dataflow is the view's SQL as joins and reductions: the user's latest
//! address (reduce), the order's item list (reduce), its latest status event
//! (reduce), and left joins of orders with each. Items are rendered when they
//! enter, as cdcview does. One timely worker: cdcview's engine uses one core.

use std::time::Instant;

use cdcview::change::{Address, Change, Item, Order, RowChange, TableChange, Text, User};
use cdcview::engine::format_address;
use cdcview::workload::{Sizes, Workload};
use differential_dataflow::input::{Input, InputSession};
use rust_decimal::Decimal;

type UserRow = (i64, (Text, Text, Option<Text>));
type AddressRow = (i64, (i64, String));
/// (user_id, (order_id, total, order_date, status, updated_date))
type OrderRow = (i64, (i64, Decimal, Option<i64>, Option<Text>, Option<i64>));
/// (order_id, (item_id, rendered line, quantity × price))
type ItemRow = (i64, (i64, Option<String>, Option<Decimal>));
/// (order_id, (updated_at, event_id, status))
type StatusRow = (i64, (i64, i64, Text));

fn user_row(u: User) -> UserRow {
    (u.user_id, (u.name, u.email, u.phone))
}
fn address_row(a: Address) -> AddressRow {
    (a.user_id, (a.address_id, format_address(&a)))
}
fn order_row(o: Order) -> OrderRow {
    (o.user_id, (o.order_id, o.total, o.order_date.map(|t| t.0), o.order_status, o.updated_date.map(|t| t.0)))
}
fn item_row(i: Item) -> Option<ItemRow> {
    let total = i.quantity.map(|q| Decimal::from(q) * i.price);
    let line = match (&i.name, i.quantity, total) {
        (Some(name), Some(q), Some(t)) => Some(format!("{name} (Qty: {q}, Price: {}, Total: {t})", i.price)),
        _ => None,
    };
    Some((i.order_id?, (i.id, line, total)))
}

struct Inputs {
    users: InputSession<u64, UserRow, isize>,
    addresses: InputSession<u64, AddressRow, isize>,
    orders: InputSession<u64, OrderRow, isize>,
    items: InputSession<u64, ItemRow, isize>,
    status: InputSession<u64, StatusRow, isize>,
}

fn retract_insert<R, D: Clone + Ord + std::fmt::Debug + 'static>(session: &mut InputSession<u64, D, isize>, change: RowChange<R>, row: impl Fn(R) -> Option<D>)
where
    D: timely::ExchangeData,
{
    if let Some(d) = change.before.and_then(&row) {
        session.remove(d);
    }
    if let Some(d) = change.after.and_then(&row) {
        session.insert(d);
    }
}

impl Inputs {
    fn apply(&mut self, change: Change) {
        match change.data {
            TableChange::Users(c) => retract_insert(&mut self.users, c, |u| Some(user_row(u))),
            TableChange::Addresses(c) => retract_insert(&mut self.addresses, c, |a| Some(address_row(a))),
            TableChange::Orders(c) => retract_insert(&mut self.orders, c, |o| Some(order_row(o))),
            TableChange::Items(c) => retract_insert(&mut self.items, c, item_row),
            TableChange::Status(e) => self.status.insert((e.order_id, (e.updated_at.0, e.id, e.status))),
        }
    }

    fn advance_to(&mut self, t: u64) {
        self.users.advance_to(t);
        self.addresses.advance_to(t);
        self.orders.advance_to(t);
        self.items.advance_to(t);
        self.status.advance_to(t);
        self.users.flush();
        self.addresses.flush();
        self.orders.flush();
        self.items.flush();
        self.status.flush();
    }
}

struct Args {
    sizes: Sizes,
    changes: usize,
    batch: usize,
    seed: u64,
}

fn parse_args() -> Args {
    let mut a = Args { sizes: Sizes { users: 100_000, orders: 200_000, items: 500_000, events: 200_000 }, changes: 1_000_000, batch: 1_000, seed: 1 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: i64 = it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--users" => a.sizes.users = value,
            "--orders" => a.sizes.orders = value,
            "--items" => a.sizes.items = value,
            "--events" => a.sizes.events = value,
            "--changes" => a.changes = value as usize,
            "--batch" => a.batch = value as usize,
            "--seed" => a.seed = value as u64,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    timely::execute_directly(move |worker| {
        let (mut inputs, probe) = worker.dataflow::<u64, _, _>(|scope| {
            let (users_in, users) = scope.new_collection::<UserRow, isize>();
            let (addresses_in, addresses) = scope.new_collection::<AddressRow, isize>();
            let (orders_in, orders) = scope.new_collection::<OrderRow, isize>();
            let (items_in, items) = scope.new_collection::<ItemRow, isize>();
            let (status_in, status) = scope.new_collection::<StatusRow, isize>();

            // The user's address with the highest id (values arrive sorted).
            let latest_address = addresses.reduce(|_user, input, output| output.push((input[input.len() - 1].0 .1.clone(), 1)));
            let with_address = users.clone().join(latest_address.clone()).map(|(u, (info, a))| (u, (info, Some(a))));
            let without_address = users.antijoin(latest_address.map(|(u, _)| u)).map(|(u, info)| (u, (info, None)));
            let user_part = with_address.concat(without_address);

            // The order's items by id: details, count, total.
            let item_part = items.reduce(|_order, input, output| {
                let mut details: Vec<&str> = Vec::new();
                let mut total = Decimal::new(0, 2);
                for ((_, line, t), _) in input {
                    if let Some(t) = t {
                        total += *t;
                    }
                    if let Some(line) = line {
                        details.push(line);
                    }
                }
                let details = (!details.is_empty()).then(|| details.join(" | "));
                output.push(((details, input.len() as i64, total), 1));
            });
            // The newest status event (values sorted by time, id, status).
            let latest_status = status.reduce(|_order, input, output| output.push((input[input.len() - 1].0.clone(), 1)));

            let rows = orders.join(user_part).map(|(_u, (o, user))| (o.0, (o, user)));
            let with_items = rows.clone().join(item_part.clone()).map(|(k, (r, i))| (k, (r, Some(i))));
            let without_items = rows.antijoin(item_part.map(|(k, _)| k)).map(|(k, r)| (k, (r, None)));
            let rows = with_items.concat(without_items);
            let with_status = rows.clone().join(latest_status.clone()).map(|(k, (r, s))| (k, (r, Some(s))));
            let without_status = rows.antijoin(latest_status.map(|(k, _)| k)).map(|(k, r)| (k, (r, None)));
            // The status rule of the view: the event wins unless the order's own update is newer.
            let view = with_status.concat(without_status).map(|(k, (((o, user), items), status))| {
                let (own_status, own_updated) = (o.3.clone(), o.4);
                let (order_status, updated) = match status {
                    Some((at, _, s)) if own_updated.is_none_or(|own| at >= own) => (Some(s), Some(at)),
                    _ => (own_status, own_updated),
                };
                (k, (o.1, o.2, user, items, order_status, updated))
            });
            let (probe, _) = view.probe();
            (Inputs { users: users_in, addresses: addresses_in, orders: orders_in, items: items_in, status: status_in }, probe)
        });

        let mut workload = Workload::new(args.sizes, args.seed);
        eprintln!("building the initial state: {:?}", args.sizes);
        let initial = workload.initial();
        let n_initial = initial.len();
        let t = Instant::now();
        for change in initial {
            inputs.apply(change);
        }
        inputs.advance_to(1);
        worker.step_while(|| probe.less_than(&1));
        let build = t.elapsed();
        eprintln!("initial state: {n_initial} changes in {:.2} s ({:.0}/s)", build.as_secs_f64(), n_initial as f64 / build.as_secs_f64());

        let stream: Vec<Vec<Change>> = (0..args.changes.div_ceil(args.batch))
            .map(|b| (0..args.batch.min(args.changes - b * args.batch)).map(|_| workload.next_change()).collect())
            .collect();
        let mut latencies = Vec::with_capacity(stream.len());
        let start = Instant::now();
        for (round, batch) in stream.into_iter().enumerate() {
            let t = Instant::now();
            for change in batch {
                inputs.apply(change);
            }
            let time = round as u64 + 2;
            inputs.advance_to(time);
            worker.step_while(|| probe.less_than(&time));
            latencies.push(t.elapsed());
        }
        let elapsed = start.elapsed();
        latencies.sort_unstable();
        let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
        println!("differential-dataflow: {} changes in {:.3} s = {:.0} changes/s (one worker)", args.changes, elapsed.as_secs_f64(), args.changes as f64 / elapsed.as_secs_f64());
        println!("batches of {}: p50 {:?}, p99 {:?}", args.batch, pct(0.5), pct(0.99));
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM:")) {
            println!("peak resident memory: {}", hwm.trim_start_matches("VmHWM:").trim());
        }
    });
}
