//! The typed changes that flow from the decoders into the engine: rows of the
//! shop tables, status events, and the source position each was read at.
//!
//! Changes are data. A Debezium update is a retraction of `before` plus an
//! insertion of `after`; a delete retracts; a snapshot read inserts.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

/// A point in time, as microseconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_unix_seconds(secs: f64) -> Self {
        Timestamp((secs * 1_000_000.0).round() as i64)
    }

    pub fn to_rfc3339(self) -> String {
        match chrono::DateTime::from_timestamp_micros(self.0) {
            Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            None => self.0.to_string(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

/// Timestamps as plain microseconds, for compact binary state (the API's
/// `Serialize` writes RFC 3339 text). Use with `#[serde(with = "...")]`.
pub mod micros {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Timestamp;

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(t.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        i64::deserialize(d).map(Timestamp)
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        use super::Timestamp;

        pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
            t.map(|t| t.0).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
            Option::<i64>::deserialize(d).map(|t| t.map(Timestamp))
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

/// Text in a change or a view row: up to 23 bytes inline, longer text on the
/// heap, shared by reference count. Names, e-mails, phones, statuses and
/// address parts are short, so a decoded change mostly carries no heap text
/// at all, and the engine moves it into its state and rows without copying.
pub type Text = smol_str::SmolStr;

/// A row of `shop.users`. Stored as it is in the engine's state snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct User {
    pub user_id: i64,
    pub name: Text,
    pub email: Text,
    pub phone: Option<Text>,
}

/// A row of `shop.addresses`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Address {
    pub address_id: i64,
    pub user_id: i64,
    pub street: Text,
    pub city: Text,
    pub state: Option<Text>,
    pub postal_code: Option<Text>,
    pub country: Text,
}

/// A row of `shop.orders`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Order {
    pub order_id: i64,
    pub user_id: i64,
    pub total: Decimal,
    pub order_date: Option<Timestamp>,
    pub order_status: Option<Text>,
    pub updated_date: Option<Timestamp>,
}

/// A row of `shop.order_items`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub id: i64,
    pub order_id: Option<i64>,
    pub name: Option<Text>,
    pub quantity: Option<i64>,
    pub price: Decimal,
}

/// A status event from the `order_updates` topic. Events are facts: they are
/// never retracted, and the newest one per order wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusEvent {
    pub id: i64,
    pub order_id: i64,
    pub status: Text,
    pub updated_at: Timestamp,
}

impl StatusEvent {
    /// Events are ordered by time, ties broken by the greater event id. Two
    /// different events with the same time and id (a pusher restarted with
    /// reused ids) are ordered by status text, so that the winner does not
    /// depend on which arrived first.
    pub fn recency(&self) -> (Timestamp, i64, &str) {
        (self.updated_at, self.id, &self.status)
    }
}

/// The retraction of `before` and the insertion of `after`; either may be absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowChange<R> {
    pub before: Option<R>,
    pub after: Option<R>,
}

impl<R> RowChange<R> {
    pub fn insert(after: R) -> Self {
        RowChange { before: None, after: Some(after) }
    }
    pub fn update(before: R, after: R) -> Self {
        RowChange { before: Some(before), after: Some(after) }
    }
    pub fn delete(before: R) -> Self {
        RowChange { before: Some(before), after: None }
    }
    /// `before` and `after`, those present.
    pub fn rows(&self) -> impl Iterator<Item = &R> {
        self.before.iter().chain(&self.after)
    }
}

/// A decoded change to one of the view's inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableChange {
    Users(RowChange<User>),
    Addresses(RowChange<Address>),
    Orders(RowChange<Order>),
    Items(RowChange<Item>),
    Status(StatusEvent),
}

/// Where a change was read: an opaque stream number (one per topic partition,
/// assigned by whoever feeds the engine) and the offset within that stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourcePos {
    pub stream: u32,
    pub offset: i64,
}

/// A change and, when it came from a log, where it was read. Positions let
/// the engine ignore redelivered records after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub pos: Option<SourcePos>,
    pub data: TableChange,
}
