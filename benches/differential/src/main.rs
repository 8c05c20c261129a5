//! `order_details_mv` in differential-dataflow, beside cdcview's own engine,
//! on the same generated state and change stream as `cdcview bench engine`,
//! timed by the same harness: a like-for-like ratio.
//!
//! Run: `cargo run --release --manifest-path benches/differential/Cargo.toml
//! -- --engine differential` (or `--engine cdcview`), with the flags of
//! `cdcview bench engine`: --users, --orders, --items, --events, --changes,
//! --batch, --seed, --mix steady|churn. Each run prints its rate (wall clock
//! and per CPU-second), the number of output changes (view rows inserted,
//! updated or deleted, counted once per batch) and a digest of the final
//! view; `scripts/bench.sh engine` runs the two engines interleaved and
//! refuses a ratio unless both agree on the changes and the digest.
//!
//! The dataflow is written as a differential expert would write it:
//!
//! ```text
//! users ⊕ addresses ──reduce per user──► user part (arranged by user id) ─┐
//! orders ──arrange by user id────────────────────────────────────── join ─┤ tagged by order id
//! items (rendered once) ──────────────────────────────────────────────────┤
//! status events ──reduce per order: newest──────────────────────────────── ┤
//!                                         one reduce per order ◄──────────┘──► the view (arranged)
//! ```
//!
//! Left joins are tagged inputs to one reduce (no join + antijoin + concat),
//! the user part's arrangement is the one the join reads, keys are ids (text
//! is only ever a value), the allocator is mimalloc as in cdcview's binary,
//! and the one trace this program holds (the view's, to read it at the end)
//! is compacted as time moves on. Seven arrangements in all. One timely
//! worker: cdcview's engine applies changes on one core.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use cdcview::change::{Change, RowChange, TableChange, Text, Timestamp};
use cdcview::engine::{format_address, item_line, sql_exact, IncrementalView, OrderDetails, OrderDetailsView};
use cdcview::workload::{Mix, Sizes, Workload};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::trace::cursor::{cursor_list, Cursor, Navigable};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::trace::TraceReader;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use timely::dataflow::operators::probe::Handle;
use timely::dataflow::operators::{Inspect, Probe};
use timely::progress::frontier::AntichainRef;

/// What a user id gathers: the user's columns and its addresses (by id,
/// formatted). `Address` sorts first, so the last one seen is the newest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum UserSide {
    Address(i64, Text),
    User { name: Text, email: Text, phone: Option<Text> },
}

/// The user's columns of a view row.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct UserPart {
    name: Text,
    email: Text,
    phone: Option<Text>,
    address: Option<Text>,
}

/// An order's own columns.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct OrderCols {
    order_id: i64,
    user_id: i64,
    total: Decimal,
    order_date: Option<i64>,
    status: Option<Text>,
    updated: Option<i64>,
}

/// What an order id gathers: the order with its user's part, its items (by
/// id: line, line total) and its newest status event (time, id, status).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum OrderSide {
    Order(OrderCols, UserPart),
    Item(i64, Option<Text>, Option<Decimal>),
    Status(i64, i64, Text),
}

/// A view row, as the dataflow keeps it (by order id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Row {
    order: OrderCols,
    user: UserPart,
    details: Option<Text>,
    item_count: i64,
    items_total: Decimal,
    status: Option<Text>,
    updated: Option<i64>,
}

impl Row {
    fn into_view_row(self) -> OrderDetails {
        OrderDetails {
            order_id: self.order.order_id,
            user_id: self.order.user_id,
            total: self.order.total,
            order_date: self.order.order_date.map(Timestamp),
            user_name: self.user.name,
            user_email: self.user.email,
            user_phone: self.user.phone,
            full_address: self.user.address,
            order_items_details: self.details,
            item_count: self.item_count,
            items_total: self.items_total,
            order_status: self.status,
            last_order_update: self.updated.map(Timestamp),
        }
    }
}

/// One user's part: its columns and newest address; nothing while the user
/// does not exist (the view's inner join with users).
fn user_part(input: &[(&UserSide, isize)]) -> Option<UserPart> {
    let mut address = None;
    let mut user = None;
    for (side, _) in input {
        match side {
            UserSide::Address(_, text) => address = Some(text.clone()),
            UserSide::User { name, email, phone } => user = Some((name, email, phone)),
        }
    }
    let (name, email, phone) = user?;
    Some(UserPart { name: name.clone(), email: email.clone(), phone: phone.clone(), address })
}

/// One order's row: nothing without the order (and its user); items listed
/// by id, counted whether or not they have a line; the status rule of the
/// view (the newest event wins unless the order's own update is newer).
fn order_row(input: &[(&OrderSide, isize)]) -> Option<Row> {
    let mut order = None;
    let mut lines: Vec<&str> = Vec::new();
    let (mut item_count, mut items_total) = (0, Decimal::ZERO);
    let mut event = None;
    for (side, _) in input {
        match side {
            OrderSide::Order(cols, user) => order = Some((cols, user)),
            OrderSide::Item(_, line, total) => {
                item_count += 1;
                items_total += total.unwrap_or_default();
                lines.extend(line.as_deref());
            }
            OrderSide::Status(at, _, status) => event = Some((*at, status)),
        }
    }
    let (cols, user) = order?;
    let (status, updated) = match event {
        Some((at, status)) if cols.updated.is_none_or(|own| at >= own) => (Some(status.clone()), Some(at)),
        _ => (cols.status.clone(), cols.updated),
    };
    Some(Row {
        order: cols.clone(),
        user: user.clone(),
        details: (!lines.is_empty()).then(|| Text::from(lines.join(" | "))),
        item_count,
        items_total: sql_exact(items_total, 2),
        status,
        updated,
    })
}

struct Inputs {
    users: InputSession<u64, (i64, UserSide), isize>,
    orders: InputSession<u64, (i64, OrderCols), isize>,
    /// Items and status events: both keyed by order id.
    items: InputSession<u64, (i64, OrderSide), isize>,
    status: InputSession<u64, (i64, (i64, i64, Text)), isize>,
}

fn retract_insert<R, D: timely::ExchangeData + Clone + Ord + std::fmt::Debug>(
    session: &mut InputSession<u64, D, isize>,
    change: RowChange<R>,
    row: impl Fn(R) -> Option<D>,
) {
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
            TableChange::Users(c) => {
                retract_insert(&mut self.users, c, |u| Some((u.user_id, UserSide::User { name: u.name, email: u.email, phone: u.phone })))
            }
            TableChange::Addresses(c) => {
                retract_insert(&mut self.users, c, |a| Some((a.user_id, UserSide::Address(a.address_id, format_address(&a).into()))))
            }
            TableChange::Orders(c) => retract_insert(&mut self.orders, c, |o| {
                let cols = OrderCols {
                    order_id: o.order_id,
                    user_id: o.user_id,
                    total: o.total,
                    order_date: o.order_date.map(|t| t.0),
                    status: o.order_status,
                    updated: o.updated_date.map(|t| t.0),
                };
                Some((o.user_id, cols))
            }),
            TableChange::Items(c) => retract_insert(&mut self.items, c, |i| {
                let (line, total) = item_line(&i);
                Some((i.order_id?, OrderSide::Item(i.id, line.map(Text::from), total)))
            }),
            TableChange::Status(e) => self.status.insert((e.order_id, (e.updated_at.0, e.id, e.status))),
        }
    }

    fn advance_to(&mut self, t: u64) {
        self.users.advance_to(t);
        self.orders.advance_to(t);
        self.items.advance_to(t);
        self.status.advance_to(t);
        self.users.flush();
        self.orders.flush();
        self.items.flush();
        self.status.flush();
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Engine {
    Cdcview,
    Differential,
}

#[derive(Clone, Copy)]
struct Args {
    engine: Engine,
    sizes: Sizes,
    changes: usize,
    batch: usize,
    seed: u64,
    mix: Mix,
}

fn parse_args() -> Args {
    let mut a = Args {
        engine: Engine::Differential,
        sizes: Sizes { users: 100_000, orders: 200_000, items: 500_000, events: 200_000 },
        changes: 1_000_000,
        batch: 1_000,
        seed: 1,
        mix: Mix::Steady,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let number = || value.parse::<i64>().unwrap_or_else(|_| panic!("{flag} needs a number, not {value}"));
        match flag.as_str() {
            "--engine" => {
                a.engine = match value.as_str() {
                    "cdcview" => Engine::Cdcview,
                    "differential" => Engine::Differential,
                    other => panic!("--engine is cdcview or differential, not {other}"),
                }
            }
            "--mix" => {
                a.mix = match value.as_str() {
                    "steady" => Mix::Steady,
                    "churn" => Mix::Churn,
                    other => panic!("--mix is steady or churn, not {other}"),
                }
            }
            "--users" => a.sizes.users = number(),
            "--orders" => a.sizes.orders = number(),
            "--items" => a.sizes.items = number(),
            "--events" => a.sizes.events = number(),
            "--changes" => a.changes = number() as usize,
            "--batch" => a.batch = number() as usize,
            "--seed" => a.seed = number() as u64,
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The CPU time this process has used, all threads.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What one run measured, printed the same way for both engines.
struct Outcome {
    changes: usize,
    wall: Duration,
    cpu: Duration,
    latencies: Vec<Duration>,
    output_changes: usize,
    rows: Vec<OrderDetails>,
}

impl Outcome {
    fn print(mut self, name: &str, batch: usize) {
        let rate = |d: Duration| self.changes as f64 / d.as_secs_f64();
        println!(
            "{name}: {} changes in {:.3} s = {:.0} changes/s; {:.0} changes per CPU-second",
            self.changes,
            self.wall.as_secs_f64(),
            rate(self.wall),
            rate(self.cpu)
        );
        self.latencies.sort_unstable();
        let pct = |p: f64| self.latencies[((self.latencies.len() as f64 * p) as usize).min(self.latencies.len() - 1)];
        println!("batches of {batch}: p50 {:?}, p99 {:?}, max {:?}", pct(0.5), pct(0.99), self.latencies.last().unwrap());
        self.rows.sort_unstable_by_key(|r| r.order_id);
        // The digest of the view as the API writes it: equal digests, equal views.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for row in &self.rows {
            serde_json::to_string(row).expect("a view row serializes").hash(&mut hasher);
        }
        println!("output changes: {}; view rows: {}; view digest: {:016x}", self.output_changes, self.rows.len(), hasher.finish());
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
            println!("peak resident memory: {}", hwm.trim());
        }
    }
}

/// The measured stream, generated before the clock starts.
fn measured_stream(workload: &mut Workload, args: &Args) -> Vec<Vec<Change>> {
    (0..args.changes.div_ceil(args.batch))
        .map(|b| (0..args.batch.min(args.changes - b * args.batch)).map(|_| workload.next_change()).collect())
        .collect()
}

/// cdcview's engine, run as `cdcview bench engine` runs it.
fn run_cdcview(args: &Args) -> Outcome {
    let mut workload = Workload::with_mix(args.sizes, args.seed, args.mix);
    let mut engine = OrderDetailsView::new();
    let mut initial = workload.initial().into_iter();
    loop {
        let batch: Vec<_> = initial.by_ref().take(10_000).collect();
        if batch.is_empty() {
            break;
        }
        engine.apply_batch(batch);
    }
    let stream = measured_stream(&mut workload, args);
    let mut latencies = Vec::with_capacity(stream.len());
    let mut output_changes = 0;
    let (start, cpu) = (Instant::now(), process_cpu_time());
    for batch in stream {
        let t = Instant::now();
        output_changes += engine.apply_batch(batch).len();
        latencies.push(t.elapsed());
    }
    let (wall, cpu) = (start.elapsed(), process_cpu_time() - cpu);
    let rows = engine.rows().map(|r| OrderDetails::clone(r)).collect();
    Outcome { changes: args.changes, wall, cpu, latencies, output_changes, rows }
}

/// The dataflow, fed and timed the same way.
fn run_differential(args: &Args) -> Outcome {
    let args = *args;
    timely::execute_directly(move |worker| {
        let mut probe = Handle::new();
        let output_changes = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let counter = output_changes.clone();
        let (mut inputs, mut view) = worker.dataflow::<u64, _, _>(|scope| {
            let (users_in, users) = scope.new_collection::<(i64, UserSide), isize>();
            let (orders_in, orders) = scope.new_collection::<(i64, OrderCols), isize>();
            let (items_in, items) = scope.new_collection::<(i64, OrderSide), isize>();
            let (status_in, status) = scope.new_collection::<(i64, (i64, i64, Text)), isize>();

            let user_parts = users.arrange_by_key().reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<i64, UserPart, u64, isize>, _, _>(
                "UserPart",
                |_user, input, output| output.extend(user_part(input).map(|part| (part, 1))),
                push_keyed,
            );
            let orders_with_users = orders.arrange_by_key().join_core(user_parts, |_user, cols: &OrderCols, part: &UserPart| {
                Some((cols.order_id, OrderSide::Order(cols.clone(), part.clone())))
            });
            let newest_status = status
                .reduce(|_order, input, output| output.push((input[input.len() - 1].0.clone(), 1)))
                .map(|(order, (at, id, status))| (order, OrderSide::Status(at, id, status)));
            let view = orders_with_users
                .concat(items)
                .concat(newest_status)
                .arrange_by_key()
                .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<i64, Row, u64, isize>, _, _>(
                    "OrderDetails",
                    |_order, input, output| output.extend(order_row(input).map(|row| (row, 1))),
                    push_keyed,
                );
            // Each batch of the view's arrangement holds one round's consolidated
            // changes: a key in it is one view row inserted, updated or deleted.
            view.stream
                .inspect(move |span| {
                    if let Some(batch) = &span.inner {
                        let mut cursor = batch.cursor();
                        while cursor.key_valid(batch) {
                            counter.set(counter.get() + 1);
                            cursor.step_key(batch);
                        }
                    }
                })
                .probe_with(&mut probe);
            (Inputs { users: users_in, orders: orders_in, items: items_in, status: status_in }, view.trace)
        });

        let mut workload = Workload::with_mix(args.sizes, args.seed, args.mix);
        for change in workload.initial() {
            inputs.apply(change);
        }
        let mut step_to = |inputs: &mut Inputs, time: u64| {
            inputs.advance_to(time);
            view.set_logical_compaction(AntichainRef::new(&[time]));
            view.set_physical_compaction(AntichainRef::new(&[time]));
            worker.step_while(|| probe.less_than(&time));
        };
        step_to(&mut inputs, 1);
        output_changes.set(0);

        let stream = measured_stream(&mut workload, &args);
        let mut latencies = Vec::with_capacity(stream.len());
        let (start, cpu) = (Instant::now(), process_cpu_time());
        for (round, batch) in stream.into_iter().enumerate() {
            let t = Instant::now();
            for change in batch {
                inputs.apply(change);
            }
            step_to(&mut inputs, round as u64 + 2);
            latencies.push(t.elapsed());
        }
        let (wall, cpu) = (start.elapsed(), process_cpu_time() - cpu);
        Outcome { changes: args.changes, wall, cpu, latencies, output_changes: output_changes.get(), rows: read_view(&mut view) }
    })
}

/// How a reduce hands its output for one key to the arrangement's builder
/// (as differential's own `reduce` does).
fn push_keyed<V>(out: &mut Vec<((i64, V), u64, isize)>, key: &i64, updates: &mut Vec<(V, u64, isize)>) {
    out.clear();
    out.extend(updates.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
}

/// The view's rows now: every (order id, row) whose updates add up to one.
fn read_view<Tr>(trace: &mut Tr) -> Vec<OrderDetails>
where
    Tr: TraceReader<Batch: Navigable<Cursor: for<'a> Cursor<Key<'a> = &'a i64, Val<'a> = &'a Row, Diff = isize>> + Clone>,
{
    let mut batches = Vec::new();
    trace.map_spans(|span| batches.extend(span.inner.clone()));
    let (mut cursor, storage) = cursor_list(batches);
    let mut rows = Vec::new();
    for ((_, row), updates) in cursor.to_vec(&storage, |k| *k, |v| v.clone()) {
        let count: isize = updates.iter().map(|(_, d)| d).sum();
        assert!(count == 0 || count == 1, "a view row counted {count} times: {row:?}");
        if count == 1 {
            rows.push(row.into_view_row());
        }
    }
    rows
}

fn main() {
    let args = parse_args();
    // As cdcview's binary runs its view (see `cdcview::memory`).
    cdcview::memory::keep_freed();
    eprintln!(
        "{} on {:?}, {:?} mix, {} changes",
        if args.engine == Engine::Cdcview { "cdcview" } else { "differential-dataflow" },
        args.sizes,
        args.mix,
        args.changes
    );
    match args.engine {
        Engine::Cdcview => run_cdcview(&args).print("cdcview", args.batch),
        Engine::Differential => run_differential(&args).print("differential-dataflow", args.batch),
    }
}
