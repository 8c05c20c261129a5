//! Reads the input topics with librdkafka. Partitions are assigned directly
//! (no consumer group): cdcview keeps its own positions, and group joins on
//! small brokers can take seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::Record;
use crate::error::SourceError;

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// A partition whose records have waited this long without one arriving is
/// reported as stalled.
pub const STALL_AFTER_MS: i64 = 30_000;

/// Where one partition stands: the next offset to read and the end of the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PartitionProgress {
    pub topic: String,
    pub partition: i32,
    /// The stream number the engine knows this partition by.
    pub stream: u32,
    /// The next offset cdcview will read.
    pub next_offset: i64,
    /// The broker's high watermark at the last check.
    pub end_offset: i64,
    /// Since when records have been waiting here without one arriving, in
    /// unix ms; `None` while the partition keeps up. A partition stuck for
    /// long has a record the broker cannot serve, or a broker in trouble.
    pub waiting_since_ms: Option<i64>,
    /// Why the partition is held at `next_offset` and read again later: a
    /// record there could not be decoded for a reason outside it (the schema
    /// registry down). `None` while the partition is read.
    pub retrying: Option<String>,
}

impl PartitionProgress {
    pub fn lag(&self) -> i64 {
        (self.end_offset - self.next_offset).max(0)
    }

    /// How long records have waited without progress, in ms at `now_ms`.
    pub fn stalled_for_ms(&self, now_ms: i64) -> i64 {
        self.waiting_since_ms.map_or(0, |since| (now_ms - since).max(0))
    }

    /// Whether records have waited `STALL_AFTER_MS` (30 s) or more at `now_ms`.
    pub fn is_stalled(&self, now_ms: i64) -> bool {
        self.stalled_for_ms(now_ms) >= STALL_AFTER_MS
    }
}

/// A consumer of a fixed set of topics, every partition assigned to it.
pub struct KafkaSource {
    consumer: BaseConsumer,
    brokers: String,
    partitions: Vec<PartitionProgress>,
    index: HashMap<(Arc<str>, i32), usize>,
}

impl KafkaSource {
    /// Connects and assigns every partition of `topics`, each starting at the
    /// offset given in `start`, else at the end of the log for `tail_topics`,
    /// else at the beginning.
    pub fn connect(
        brokers: &str,
        fetch_wait: std::time::Duration,
        topics: &[String],
        start: &HashMap<(String, i32), i64>,
        tail_topics: &[String],
    ) -> Result<Self, SourceError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", "cdcview")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("allow.auto.create.topics", "false")
            // Freshness over fetch efficiency: do not let the broker hold a
            // fetch for long waiting for more bytes.
            .set("fetch.wait.max.ms", fetch_wait.as_millis().max(1).to_string())
            .set("fetch.queue.backoff.ms", "1")
            // Replay at start is bound by fetch round trips: let one fetch
            // carry up to 16 MiB per partition instead of 1 MiB.
            .set("max.partition.fetch.bytes", "16777216")
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "2000")
            .create()?;
        let mut source = KafkaSource { consumer, brokers: brokers.to_string(), partitions: Vec::new(), index: HashMap::new() };
        let mut assignment = TopicPartitionList::new();
        let mut tails = Vec::new();
        for topic in topics {
            for partition in source.partition_ids(topic)? {
                let next = start.get(&(topic.clone(), partition)).copied();
                let from_end = next.is_none() && tail_topics.contains(topic);
                let offset = match next {
                    Some(next) => Offset::Offset(next),
                    None if from_end => Offset::End,
                    None => Offset::Beginning,
                };
                if from_end {
                    tails.push(source.partitions.len());
                }
                assignment.add_partition_offset(topic, partition, offset)?;
                let stream = source.partitions.len() as u32;
                source.index.insert((Arc::from(topic.as_str()), partition), source.partitions.len());
                source.partitions.push(PartitionProgress {
                    topic: topic.clone(),
                    partition,
                    stream,
                    next_offset: next.unwrap_or(0),
                    end_offset: 0,
                    waiting_since_ms: None,
                    retrying: None,
                });
            }
        }
        source.consumer.assign(&assignment)?;
        source.fetch_end_offsets()?;
        for i in tails {
            source.partitions[i].next_offset = source.partitions[i].end_offset;
        }
        Ok(source)
    }

    fn partition_ids(&self, topic: &str) -> Result<Vec<i32>, SourceError> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|reason| SourceError::Unreachable { brokers: self.brokers.clone(), reason })?;
        let missing = || SourceError::MissingTopic { topic: topic.to_string(), brokers: self.brokers.clone() };
        let t = metadata.topics().iter().find(|t| t.name() == topic).ok_or_else(missing)?;
        if t.error().is_some() || t.partitions().is_empty() {
            return Err(missing());
        }
        Ok(t.partitions().iter().map(|p| p.id()).collect())
    }

    /// Waits up to `wait` for the first record, then takes what is already
    /// buffered, up to `max` records.
    pub fn poll_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<(u32, Record)>, SourceError> {
        let mut batch = Vec::new();
        let mut timeout = wait;
        while batch.len() < max {
            match self.consumer.poll(timeout) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => continue,
                // Transport errors are retried by librdkafka itself; report
                // them to the caller so they show in the status.
                Some(Err(e)) => {
                    if batch.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
                Some(Ok(msg)) => {
                    let key = (Arc::<str>::from(msg.topic()), msg.partition());
                    let Some(&i) = self.index.get(&key) else { continue };
                    let progress = &mut self.partitions[i];
                    // Fetched before the partition was held; read again on resume.
                    if progress.retrying.is_some() {
                        continue;
                    }
                    progress.next_offset = msg.offset() + 1;
                    progress.end_offset = progress.end_offset.max(progress.next_offset);
                    progress.waiting_since_ms = None;
                    let record = Record {
                        topic: key.0,
                        partition: msg.partition(),
                        offset: msg.offset(),
                        key: msg.key().map(<[u8]>::to_vec),
                        value: msg.payload().map(<[u8]>::to_vec),
                        timestamp_ms: msg.timestamp().to_millis(),
                    };
                    batch.push((progress.stream, record));
                    timeout = Duration::ZERO;
                }
            }
        }
        Ok(batch)
    }

    /// Asks the broker for each partition's end offset (one round trip each).
    fn fetch_end_offsets(&mut self) -> Result<(), SourceError> {
        for p in &mut self.partitions {
            match self.consumer.fetch_watermarks(&p.topic, p.partition, METADATA_TIMEOUT) {
                Ok((_, high)) => p.end_offset = high,
                Err(KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                    return Err(SourceError::MissingTopic { topic: p.topic.clone(), brokers: self.brokers.clone() })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Updates each partition's end offset from the high watermark the broker
    /// sent with its last fetch response. No round trip: asking the broker
    /// every second stalled the poll loop for about 100 ms each time, which
    /// showed as regular spikes in the freshness benchmark.
    pub fn refresh_end_offsets(&mut self) {
        let client = self.consumer.client().native_ptr();
        for p in &mut self.partitions {
            let Ok(topic) = std::ffi::CString::new(p.topic.as_str()) else { continue };
            let (mut low, mut high) = (-1i64, -1i64);
            // SAFETY: `client` is the live handle owned by `self.consumer`,
            // `topic` is a NUL-terminated string that outlives the call, and
            // librdkafka only writes the two offsets; the call reads a local cache.
            let err = unsafe { rdkafka::bindings::rd_kafka_get_watermark_offsets(client, topic.as_ptr(), p.partition, &mut low, &mut high) };
            if err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0 {
                p.end_offset = high;
            }
            p.waiting_since_ms = match (p.lag(), p.waiting_since_ms) {
                // A held partition waits on purpose, not on the broker.
                _ if p.retrying.is_some() => None,
                (0, _) => None,
                (_, None) => Some(crate::pipeline::now_ms()),
                (_, since) => since,
            };
        }
    }

    /// Stops reading `stream` and sets it back to `offset`, so that the
    /// record there is read again once [`resume`](Self::resume)d; `why` shows
    /// in the status meanwhile. Records of it fetched already are dropped.
    pub fn hold(&mut self, stream: u32, offset: i64, why: String) -> Result<(), SourceError> {
        let p = &mut self.partitions[stream as usize];
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        self.consumer.pause(&tpl)?;
        p.next_offset = offset;
        p.retrying = Some(why);
        p.waiting_since_ms = None;
        Ok(())
    }

    /// Reads a held stream again, from the offset it was held at.
    pub fn resume(&mut self, stream: u32) -> Result<(), SourceError> {
        let p = &mut self.partitions[stream as usize];
        self.consumer.seek(&p.topic, p.partition, Offset::Offset(p.next_offset), METADATA_TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&p.topic, p.partition);
        self.consumer.resume(&tpl)?;
        p.retrying = None;
        Ok(())
    }

    pub fn progress(&self) -> &[PartitionProgress] {
        &self.partitions
    }
}
