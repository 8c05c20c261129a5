//! The sink stage: writes `order_details_mv`, and each SQL-maintained view
//! as its own table (`tables`), into PostgreSQL for psql users.
//!
//! Deltas are coalesced by key while a write is in flight, then written as one
//! transaction per flush: deletes, a multi-row upsert, the Kafka offsets the
//! rows reflect, and dead letters.
//!
//! On start, the table resumes from its own offsets where it can: when the
//! engine was restored from a snapshot that the table has already passed
//! (`cdcview_offsets` at or beyond the snapshot's positions, and within the
//! topics), the batches the table already reflects are skipped and writing
//! resumes with the first batch beyond them, so a restart rewrites nothing.
//! Otherwise the first flush replaces the table's content, so the table
//! equals the view whatever it held before. When
//! PostgreSQL is away the sink keeps coalescing (memory stays bounded by the
//! view's size) and retries with backoff; the API is not affected.

mod tables;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_postgres::{Client, NoTls};

use crate::engine::{OrderDetails, ViewDelta};
use crate::error::{DecodeError, SinkError};
use crate::pipeline::{now_ms, Position, Shared};
use crate::views::{PublishedView, ServedView, ViewStore};

/// What one engine batch hands the sink.
pub struct SinkBatch {
    pub deltas: Vec<ViewDelta<OrderDetails>>,
    /// The SQL views' changed rows.
    pub views: Vec<(Arc<PublishedView>, Vec<cdcview_engine::RowChange>)>,
    /// Views added while running: their tables are created (or emptied)
    /// and filled from this batch, which holds all of their rows.
    pub added: Vec<String>,
    /// Views dropped while running: their tables go.
    pub dropped: Vec<String>,
    /// Where each partition stands once the batch is written.
    pub offsets: Vec<Position>,
    pub dead_letters: Vec<DecodeError>,
    /// Set on the batch that carries a view restored from a snapshot: each
    /// partition's end at start (the next offset its log will write), to tell
    /// whether the table's stored offsets belong to these topics.
    pub restored: Option<Vec<Position>>,
}

type Offsets = HashMap<(String, i32), i64>;

/// True when every offset in `batch` is at or before the table's offset for
/// that partition: the table already reflects everything the batch holds.
fn covered(batch: &[Position], table: &Offsets) -> bool {
    batch.iter().all(|p| table_offset(table, p).is_some_and(|at| p.next_offset <= at))
}

fn table_offset(table: &Offsets, p: &Position) -> Option<i64> {
    table.get(&(p.topic.clone(), p.partition)).copied()
}

/// Skips what the table already holds; adds the rest to `pending`.
fn take(batch: SinkBatch, pending: &mut Pending, tables: &mut Tables, skip_until: &mut Option<Offsets>) {
    match skip_until {
        Some(table) if covered(&batch.offsets, table) => pending.dead_letters.extend(batch.dead_letters),
        _ => {
            *skip_until = None;
            pending.add(batch, tables);
        }
    }
}

/// Decides what to do with the restored view: `Some(table offsets)` when the
/// table is already at or past it (skip until beyond them), `None` to
/// replace the table.
async fn resume_point(url: &str, client: &mut Option<Client>, tables: &Tables, batch: &SinkBatch, log_ends: &[Position]) -> Option<Offsets> {
    let table = match tokio::time::timeout(Duration::from_secs(5), table_offsets(url, client, tables)).await {
        Ok(Ok((_, false))) => {
            tracing::info!("a view's PostgreSQL table was just created; every table will be rewritten from the views");
            return None;
        }
        Ok(Ok((offsets, true))) => offsets,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "cannot read the table's offsets; it will be rewritten from the view");
            return None;
        }
        Err(_) => return None,
    };
    let within_topics = log_ends.iter().all(|end| table_offset(&table, end).is_none_or(|at| at <= end.next_offset));
    if covered(&batch.offsets, &table) && within_topics {
        tracing::info!("the PostgreSQL table is at or past the restored snapshot; resuming from its offsets without rewriting it");
        Some(table)
    } else {
        tracing::info!("the PostgreSQL table is behind the restored snapshot (or from other topics); it will be rewritten from the view");
        None
    }
}

/// The offsets the tables reflect, on the sink's connection (made if
/// needed), and whether every view's table was already there as defined.
async fn table_offsets(url: &str, client: &mut Option<Client>, tables: &Tables) -> Result<(Offsets, bool), SinkError> {
    let mut all_there = true;
    if client.is_none() {
        let (connected, there) = connect(url, tables).await?;
        (*client, all_there) = (Some(connected), there);
    }
    let rows = client.as_ref().expect("connected above").query("SELECT topic, partition, next_offset FROM cdcview_offsets", &[]).await?;
    Ok((rows.iter().map(|r| ((r.get::<_, String>(0), r.get::<_, i32>(1)), r.get::<_, i64>(2))).collect(), all_there))
}

/// The SQL-maintained views by name: each is a table.
type Tables = BTreeMap<String, ServedView>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS order_details_mv (
    order_id            bigint PRIMARY KEY,
    user_id             bigint NOT NULL,
    total               numeric(12,2) NOT NULL,
    order_date          timestamptz,
    user_name           text NOT NULL,
    user_email          text NOT NULL,
    user_phone          text,
    full_address        text,
    order_items_details text,
    item_count          bigint NOT NULL,
    items_total         numeric NOT NULL,
    order_status        text,
    last_order_update   timestamptz
);
CREATE TABLE IF NOT EXISTS cdcview_offsets (
    topic       text NOT NULL,
    partition   int NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS cdcview_dead_letters (
    topic     text NOT NULL,
    partition int NOT NULL,
    \"offset\"  bigint NOT NULL,
    reason    text NOT NULL,
    raw       bytea NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, \"offset\")
);";

const UPSERT: &str = "
INSERT INTO order_details_mv
SELECT r.order_id, r.user_id, r.total::numeric,
       'epoch'::timestamptz + r.order_date * interval '1 microsecond',
       r.user_name, r.user_email, r.user_phone, r.full_address, r.order_items_details,
       r.item_count, r.items_total::numeric, r.order_status,
       'epoch'::timestamptz + r.last_order_update * interval '1 microsecond'
FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::int8[], $11::text[], $12::text[], $13::int8[])
     AS r(order_id, user_id, total, order_date, user_name, user_email, user_phone, full_address,
          order_items_details, item_count, items_total, order_status, last_order_update)
ON CONFLICT (order_id) DO UPDATE SET
    user_id = EXCLUDED.user_id, total = EXCLUDED.total, order_date = EXCLUDED.order_date,
    user_name = EXCLUDED.user_name, user_email = EXCLUDED.user_email, user_phone = EXCLUDED.user_phone,
    full_address = EXCLUDED.full_address, order_items_details = EXCLUDED.order_items_details,
    item_count = EXCLUDED.item_count, items_total = EXCLUDED.items_total,
    order_status = EXCLUDED.order_status, last_order_update = EXCLUDED.last_order_update";

/// Rows per statement: large enough to amortise the round trip, small enough
/// to keep a statement's parameters modest.
const CHUNK: usize = 5_000;

/// Everything received but not yet committed.
#[derive(Default)]
struct Pending {
    rows: BTreeMap<i64, Option<Arc<OrderDetails>>>,
    /// The SQL views' changed rows, by view.
    views: BTreeMap<String, tables::PendingRows>,
    added: std::collections::BTreeSet<String>,
    dropped: std::collections::BTreeSet<String>,
    offsets: HashMap<(String, i32), i64>,
    dead_letters: Vec<DecodeError>,
}

impl Pending {
    fn add(&mut self, batch: SinkBatch, tables: &mut Tables) {
        for name in batch.dropped {
            tables.remove(&name);
            self.views.remove(&name);
            self.added.remove(&name);
            self.dropped.insert(name);
        }
        self.added.extend(batch.added);
        for d in batch.deltas {
            self.rows.insert(d.key, d.after);
        }
        for (view, changes) in batch.views {
            tables.entry(view.info.name.clone()).or_insert_with(|| view.info.clone());
            let rows = self.views.entry(view.info.name.clone()).or_default();
            for change in changes {
                rows.insert(change.key, change.after);
            }
        }
        for Position { topic, partition, next_offset } in batch.offsets {
            let slot = self.offsets.entry((topic, partition)).or_insert(next_offset);
            *slot = (*slot).max(next_offset);
        }
        self.dead_letters.extend(batch.dead_letters);
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty()
            && self.views.is_empty()
            && self.added.is_empty()
            && self.dropped.is_empty()
            && self.offsets.is_empty()
            && self.dead_letters.is_empty()
    }

    fn len(&self) -> usize {
        self.rows.len() + self.views.values().map(BTreeMap::len).sum::<usize>()
    }
}

/// Runs the sink until the batch channel closes. Nothing is written before the
/// view is `ready`, so the table never shows a half-replayed view.
/// `views` lists the SQL views, each written to its own table.
pub async fn run(
    url: String,
    mut batches: mpsc::UnboundedReceiver<SinkBatch>,
    shared: Arc<Shared>,
    mut ready: watch::Receiver<bool>,
    views: Arc<ViewStore>,
) {
    shared.update_sink(|s| s.state = "starting");
    let mut tables: Tables = views.all().iter().filter(|v| !v.info.built_in).map(|v| (v.info.name.clone(), v.info.clone())).collect();
    let mut pending = Pending::default();
    let mut client: Option<Client> = None;
    let mut replace_all = true;
    // The table's offsets while the batches it already reflects are skipped.
    let mut skip_until: Option<Offsets> = None;
    let mut backoff = Duration::from_millis(100);

    loop {
        // Block for one batch, then take whatever else is queued. With rows
        // still pending after a failed flush, go straight to the retry (the
        // backoff was slept already): waiting for new data here would leave
        // the table behind for as long as the sources stay quiet.
        let waiting_for_ready = !*ready.borrow();
        if pending.is_empty() || waiting_for_ready {
            tokio::select! {
                batch = batches.recv() => match batch {
                    Some(b) => {
                        if let Some(log_ends) = &b.restored {
                            skip_until = resume_point(&url, &mut client, &tables, &b, log_ends).await;
                            replace_all = skip_until.is_none();
                            if !replace_all {
                                shared.update_sink(|s| s.state = "ok");
                            }
                        }
                        take(b, &mut pending, &mut tables, &mut skip_until);
                    }
                    // Closed: the pipeline stopped. Nothing pending, or never
                    // ready (so nothing would be written): done.
                    None if pending.is_empty() || waiting_for_ready => return,
                    None => {}
                },
                _ = ready.changed(), if waiting_for_ready => {}
            }
        }
        while let Ok(b) = batches.try_recv() {
            take(b, &mut pending, &mut tables, &mut skip_until);
        }
        shared.update_sink(|s| s.pending_rows = pending.len());
        if !*ready.borrow() || pending.is_empty() {
            continue;
        }
        match flush(&url, &mut client, &tables, &mut pending, replace_all).await {
            Ok(written) => {
                let rewrote = std::mem::take(&mut replace_all);
                backoff = Duration::from_millis(100);
                shared.update_sink(|s| {
                    s.state = "ok";
                    s.table_rewrites += u64::from(rewrote);
                    s.last_error = None;
                    s.rows_written += written as u64;
                    s.pending_rows = 0;
                    s.last_flush_ms = Some(now_ms());
                });
            }
            Err(e) => {
                client = None;
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "PostgreSQL sink degraded; the API keeps serving from memory");
                shared.update_sink(|s| {
                    s.state = "degraded";
                    s.last_error = Some(e.to_string());
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A connection with every table in place; also whether each view's table
/// was already there as defined.
async fn connect(url: &str, tables: &Tables) -> Result<(Client, bool), SinkError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    client.batch_execute(SCHEMA).await?;
    let views: Vec<&ServedView> = tables.values().collect();
    let all_there = tables::ensure(&client, &views).await?;
    Ok((client, all_there))
}

/// Writes everything pending in one transaction; on success `pending` is
/// emptied, on failure it is left whole for the retry.
async fn flush(url: &str, client: &mut Option<Client>, tables: &Tables, pending: &mut Pending, replace_all: bool) -> Result<usize, SinkError> {
    if client.is_none() {
        let (connected, all_there) = connect(url, tables).await?;
        if !all_there && !replace_all {
            tracing::warn!(
                "a view's PostgreSQL table was missing or changed while running; it holds only what changed since, until the next full rewrite"
            );
        }
        *client = Some(connected);
    }
    let client = client.as_mut().expect("connected above");
    let tx = client.transaction().await?;
    if replace_all {
        tx.execute("TRUNCATE order_details_mv", &[]).await?;
        for view in tables.values() {
            tables::truncate(&tx, view).await?;
        }
    }
    for name in &pending.dropped {
        tables::drop(&tx, name).await?;
    }
    for view in pending.added.iter().filter_map(|name| tables.get(name)) {
        tables::ensure(&tx, &[view]).await?;
        tables::truncate(&tx, view).await?;
    }
    for (name, rows) in &pending.views {
        if let Some(view) = tables.get(name) {
            tables::write(&tx, view, rows).await?;
        }
    }
    let (upserts, deletes): (Vec<_>, Vec<_>) = pending.rows.iter().partition(|(_, row)| row.is_some());
    let deleted: Vec<i64> = deletes.iter().map(|(k, _)| **k).collect();
    if !deleted.is_empty() {
        tx.execute("DELETE FROM order_details_mv WHERE order_id = ANY($1)", &[&deleted]).await?;
    }
    let rows: Vec<&OrderDetails> = upserts.iter().filter_map(|(_, r)| r.as_deref()).collect();
    for chunk in rows.chunks(CHUNK) {
        upsert(&tx, chunk).await?;
    }
    for ((topic, partition), next) in &pending.offsets {
        tx.execute(
            "INSERT INTO cdcview_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
             ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            &[topic, partition, next],
        )
        .await?;
    }
    for e in &pending.dead_letters {
        tx.execute(
            "INSERT INTO cdcview_dead_letters (topic, partition, \"offset\", reason, raw) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&e.topic, &e.partition, &e.offset, &e.reason.to_string(), &e.raw],
        )
        .await?;
    }
    tx.commit().await?;
    let written = pending.len();
    *pending = Pending::default();
    Ok(written)
}

async fn upsert(tx: &tokio_postgres::Transaction<'_>, rows: &[&OrderDetails]) -> Result<(), SinkError> {
    let text = |f: fn(&OrderDetails) -> Option<&str>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
    let decimal = |f: fn(&OrderDetails) -> rust_decimal::Decimal| rows.iter().map(|r| f(r).to_string()).collect::<Vec<_>>();
    let ids: Vec<i64> = rows.iter().map(|r| r.order_id).collect();
    let users: Vec<i64> = rows.iter().map(|r| r.user_id).collect();
    let totals = decimal(|r| r.total);
    let dates: Vec<Option<i64>> = rows.iter().map(|r| r.order_date.map(|t| t.0)).collect();
    let names = text(|r| Some(&r.user_name));
    let emails = text(|r| Some(&r.user_email));
    let phones = text(|r| r.user_phone.as_deref());
    let addresses = text(|r| r.full_address.as_deref());
    let details = text(|r| r.order_items_details.as_deref());
    let counts: Vec<i64> = rows.iter().map(|r| r.item_count).collect();
    let items_totals = decimal(|r| r.items_total);
    let statuses = text(|r| r.order_status.as_deref());
    let updates: Vec<Option<i64>> = rows.iter().map(|r| r.last_order_update.map(|t| t.0)).collect();
    tx.execute(UPSERT, &[&ids, &users, &totals, &dates, &names, &emails, &phones, &addresses, &details, &counts, &items_totals, &statuses, &updates])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(offsets: &[(&str, i64)]) -> SinkBatch {
        let offsets = offsets.iter().map(|(t, o)| position(t, *o)).collect();
        SinkBatch { deltas: Vec::new(), views: Vec::new(), added: Vec::new(), dropped: Vec::new(), offsets, dead_letters: Vec::new(), restored: None }
    }

    fn position(topic: &str, next_offset: i64) -> Position {
        Position { topic: topic.to_string(), partition: 0, next_offset }
    }

    #[test]
    fn batches_the_table_already_reflects_are_skipped_until_one_goes_beyond() {
        let table: Offsets = [(("a".to_string(), 0), 10), (("b".to_string(), 0), 5)].into();
        let mut skip = Some(table);
        let mut pending = Pending::default();
        take(batch(&[("a", 7), ("b", 5)]), &mut pending, &mut Tables::new(), &mut skip);
        assert!(pending.offsets.is_empty() && skip.is_some(), "covered: skipped");
        take(batch(&[("a", 10), ("b", 6)]), &mut pending, &mut Tables::new(), &mut skip);
        assert!(skip.is_none(), "b went beyond the table: writing resumes");
        assert_eq!(pending.offsets.get(&("b".to_string(), 0)), Some(&6));
        take(batch(&[("a", 8)]), &mut pending, &mut Tables::new(), &mut skip);
        assert_eq!(pending.offsets.get(&("a".to_string(), 0)), Some(&10), "after resuming, nothing is skipped");
    }

    #[test]
    fn a_partition_the_table_does_not_know_is_not_covered() {
        let table: Offsets = [(("a".to_string(), 0), 10)].into();
        assert!(covered(&[position("a", 10)], &table));
        assert!(!covered(&[position("a", 11)], &table));
        assert!(!covered(&[position("a", 1), position("c", 0)], &table));
    }
}
