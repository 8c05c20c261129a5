//! Configuration of `cdcview serve`, from flags or `CDCVIEW_*` environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use crate::decode::{Format, Input};
use crate::pipeline::PipelineConfig;

#[derive(Args, Clone, Debug)]
pub struct ServeConfig {
    /// Kafka bootstrap servers.
    #[arg(long, env = "CDCVIEW_BROKERS", default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Prefix of the Debezium topics: PREFIX.users, PREFIX.addresses, PREFIX.orders, PREFIX.order_items.
    #[arg(long, env = "CDCVIEW_TOPIC_PREFIX", default_value = "mysql.shop")]
    pub topic_prefix: String,
    /// Topic of the JSON status events.
    #[arg(long, env = "CDCVIEW_STATUS_TOPIC", default_value = "order_updates")]
    pub status_topic: String,
    /// Debezium's transaction topic (`provide.transaction.metadata`; it must
    /// have one partition). The changes of a MySQL transaction are applied
    /// together once all of them have arrived. `none`: apply every change as
    /// it comes.
    #[arg(long, env = "CDCVIEW_TRANSACTION_TOPIC", default_value = "mysql.transaction")]
    pub transaction_topic: String,
    /// How long an incomplete transaction may hold its changes back before it
    /// is applied as it is, with a warning (an event lost upstream must not
    /// stall the view), in ms.
    #[arg(long, env = "CDCVIEW_TRANSACTION_TIMEOUT_MS", default_value_t = 10_000)]
    pub transaction_timeout_ms: u64,
    /// Wire format of the Debezium topics.
    #[arg(long, env = "CDCVIEW_FORMAT", value_enum, default_value_t = Format::Json)]
    pub format: Format,
    /// Confluent-compatible schema registry, for --format avro.
    #[arg(long, env = "CDCVIEW_SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,
    /// Address the HTTP API listens on.
    #[arg(long, env = "CDCVIEW_LISTEN", default_value = "127.0.0.1:8001")]
    pub listen: SocketAddr,
    /// PostgreSQL to write order_details_mv into, e.g. postgres://cdcview@127.0.0.1:5433/cdcview. Without it the sink is off.
    #[arg(long, env = "CDCVIEW_PG_URL")]
    pub pg_url: Option<String>,
    /// MySQL for /users, /orders, ... and the naive /order_details, e.g. mysql://cdcview:cdcview@127.0.0.1:3307/shop.
    #[arg(long, env = "CDCVIEW_MYSQL_URL")]
    pub mysql_url: Option<String>,
    /// Most records applied as one batch (one view version).
    #[arg(long, env = "CDCVIEW_MAX_BATCH", default_value_t = 10_000)]
    pub max_batch: usize,
    /// How long one poll waits for the first record of a batch, in ms.
    #[arg(long, env = "CDCVIEW_POLL_WAIT_MS", default_value_t = 20)]
    pub poll_wait_ms: u64,
    /// The consumer's `fetch.wait.max.ms`: how long the broker may hold a
    /// fetch. tansu 0.6 holds every fetch this long, records or not, so it
    /// adds up to this much latency and sets how often cdcview asks (each
    /// ask costs tansu milliseconds of CPU).
    #[arg(long, env = "CDCVIEW_FETCH_WAIT_MS", default_value_t = 10)]
    pub fetch_wait_ms: u64,
    /// Folder for snapshots of the engine's state. On start, cdcview loads the
    /// snapshot and resumes the topics where it ends, instead of replaying
    /// them from the beginning. Without it, every start replays the topics.
    #[arg(long, env = "CDCVIEW_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Seconds between snapshots (taken between batches, when something
    /// changed; and on shutdown). A child process writes each one while the
    /// pipeline goes on (it pauses only to fork, milliseconds); after a
    /// crash, the changes since the last snapshot are replayed from Kafka.
    #[arg(long, env = "CDCVIEW_SNAPSHOT_EVERY_SECS", default_value_t = 120)]
    pub snapshot_every_secs: u64,
    /// On shutdown, how long to wait for the PostgreSQL sink to write what it
    /// still holds, with its offsets, in seconds. Past it the service stops
    /// anyway and the next start rewrites the table.
    #[arg(long, env = "CDCVIEW_SHUTDOWN_TIMEOUT_SECS", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,
    /// How many of the newest change events are kept, so that a change-stream
    /// client that reconnects with `Last-Event-ID` receives what it missed.
    #[arg(long, env = "CDCVIEW_CHANGE_LOG_EVENTS", default_value_t = crate::pipeline::CHANGE_LOG_EVENTS)]
    pub change_log_events: usize,
    /// View declarations: `.sql` files, or folders whose `.sql` files load in
    /// name order (comma-separated). Every materialized view is served under
    /// /views. The default folder may be absent (then only order_details_mv
    /// is served); a folder or file given explicitly must exist.
    #[arg(long, env = "CDCVIEW_VIEWS", default_value = DEFAULT_VIEWS, value_delimiter = ',')]
    pub views: Vec<std::path::PathBuf>,
    /// Allow views to be added (`POST /views`) and dropped (`DELETE
    /// /views/{name}`) while running. It keeps a copy of every declared
    /// source's rows (in memory and in the snapshot), which a new view is
    /// filled from.
    #[arg(long, env = "CDCVIEW_RUNTIME_VIEWS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub runtime_views: bool,
    /// Token that `POST /views` and `DELETE /views/{name}` must carry as
    /// `Authorization: Bearer TOKEN`. Without it, they are accepted only
    /// from loopback clients.
    #[arg(long, env = "CDCVIEW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The most views that may be posted at run time.
    #[arg(long, env = "CDCVIEW_MAX_POSTED_VIEWS", default_value_t = 16)]
    pub max_posted_views: usize,
    /// The most rows a view posted at run time may hold.
    #[arg(long, env = "CDCVIEW_MAX_VIEW_ROWS", default_value_t = 1_000_000)]
    pub max_view_rows: usize,
}

pub const DEFAULT_VIEWS: &str = "views";

impl ServeConfig {
    /// Every topic read and the input it feeds; the transaction topic last.
    pub fn topics(&self) -> Vec<(String, Input)> {
        let mut topics: Vec<(String, Input)> = Input::ALL
            .iter()
            .map(|&input| match input {
                Input::OrderUpdates => (self.status_topic.clone(), input),
                table => (format!("{}.{}", self.topic_prefix, table.name()), table),
            })
            .collect();
        if !matches!(self.transaction_topic.as_str(), "" | "none") {
            topics.push((self.transaction_topic.clone(), Input::Transactions));
        }
        topics
    }

    /// The view declarations to load; none when only the default folder was
    /// asked for and it does not exist.
    pub fn view_paths(&self) -> &[std::path::PathBuf] {
        match self.views.as_slice() {
            [only] if only.as_os_str() == DEFAULT_VIEWS && !only.exists() => &[],
            paths => paths,
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            brokers: self.brokers.clone(),
            topics: self.topics(),
            format: self.format,
            schema_registry: self.schema_registry.clone(),
            max_batch: self.max_batch.max(1),
            poll_wait: Duration::from_millis(self.poll_wait_ms),
            fetch_wait: Duration::from_millis(self.fetch_wait_ms),
            state_dir: self.state_dir.clone(),
            snapshot_every: Duration::from_secs(self.snapshot_every_secs.max(1)),
            transaction_timeout: Duration::from_millis(self.transaction_timeout_ms),
        }
    }
}
