//! The served views' rows by key, one version per batch, and how a row and
//! a key are written for HTTP: a row as a JSON object, a key as text.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use cdcview_engine::types::SqlType;
use cdcview_engine::{Key, Row, RowChange, SharedRow, Value};
use parking_lot::{Mutex, RwLock};
use tokio::sync::broadcast;

use super::ServedView;
use crate::change::Timestamp;
use crate::pipeline::{now_micros, ChangeLog, Positioned, Resume, StreamPos, CHANGE_LOG_EVENTS};

/// Rows of one view by key, and the version they are at.
pub struct Rows {
    pub by_key: BTreeMap<Key, SharedRow>,
    /// Increases with every batch that changed the view. It starts at the
    /// process's start time in microseconds, as `order_details_mv`'s does,
    /// so a change-stream position of an earlier run is never taken for
    /// one of this run.
    pub version: u64,
}

impl Default for Rows {
    fn default() -> Self {
        Rows { by_key: BTreeMap::new(), version: now_micros() }
    }
}

/// One change of a view's row, as its change stream sends it.
pub struct ViewEvent {
    pub version: u64,
    pub index: u32,
    pub key: Key,
    pub before: Option<SharedRow>,
    pub after: Option<SharedRow>,
}

impl Positioned for ViewEvent {
    fn position(&self) -> StreamPos {
        (self.version, self.index)
    }
}

pub struct PublishedView {
    pub info: ServedView,
    /// Empty for the built-in view, whose rows the pipeline's `Shared` holds.
    pub rows: RwLock<Rows>,
    /// The change stream, and its newest events for clients that reconnect
    /// (held while an event is sent, so a subscriber misses nothing).
    pub changes: broadcast::Sender<Arc<ViewEvent>>,
    log: Mutex<ChangeLog<ViewEvent>>,
}

impl PublishedView {
    pub fn new(info: ServedView) -> Self {
        let rows = Rows::default();
        let log = Mutex::new(ChangeLog::new(rows.version, CHANGE_LOG_EVENTS));
        PublishedView { info, rows: RwLock::new(rows), changes: broadcast::channel(4096).0, log }
    }

    /// Applies one batch's changes as one new version, and sends them on
    /// the change stream.
    pub fn apply(&self, changes: Vec<RowChange>) {
        let mut rows = self.rows.write();
        rows.version += 1;
        let version = rows.version;
        let mut log = self.log.lock();
        for (index, change) in changes.into_iter().enumerate() {
            match &change.after {
                Some(row) => rows.by_key.insert(change.key.clone(), SharedRow::clone(row)),
                None => rows.by_key.remove(change.key.as_slice()),
            };
            let index = u32::try_from(index).unwrap_or(u32::MAX - 1);
            let event = Arc::new(ViewEvent { version, index, key: change.key, before: change.before, after: change.after });
            log.push(Arc::clone(&event));
            let _ = self.changes.send(event);
        }
    }

    /// Subscribes to the change stream; with `after`, also returns what the
    /// client missed since then (or that it must re-read the view).
    pub fn subscribe(&self, after: Option<StreamPos>) -> (broadcast::Receiver<Arc<ViewEvent>>, Option<Resume<ViewEvent>>) {
        let log = self.log.lock();
        let receiver = self.changes.subscribe();
        let current = self.rows.read().version;
        (receiver, after.map(|after| log.since(after, current)))
    }
}

/// Every served view, in declaration order, then the posted ones in the
/// order they were posted.
#[derive(Default)]
pub struct ViewStore {
    views: RwLock<Vec<Arc<PublishedView>>>,
}

impl ViewStore {
    pub fn new(served: &[ServedView]) -> Self {
        let views = served.iter().map(|info| Arc::new(PublishedView::new(info.clone()))).collect();
        ViewStore { views: RwLock::new(views) }
    }

    pub fn all(&self) -> Vec<Arc<PublishedView>> {
        self.views.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<PublishedView>> {
        self.views.read().iter().find(|v| v.info.name == name).cloned()
    }

    pub fn add(&self, view: Arc<PublishedView>) {
        self.views.write().push(view);
    }

    pub fn remove(&self, name: &str) {
        self.views.write().retain(|v| v.info.name != name);
    }
}

/// A value as JSON: numbers for integers and doubles, exact numerics as
/// strings with their scale (as `/order_details_mv` writes money), times
/// as RFC 3339 text.
pub fn value_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Decimal(d) => d.to_string().into(),
        Value::Double(f) => serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, serde_json::Value::Number),
        Value::Text(t) => t.as_str().into(),
        Value::Timestamp(us) => Timestamp(*us).to_rfc3339().into(),
    }
}

/// A value as one part of a key's text, and as a `?column=value` filter
/// compares it; `None` for NULL.
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Text(t) => Some(t.to_string()),
        Value::Timestamp(us) => Some(Timestamp(*us).to_rfc3339()),
        other => Some(value_json(other).to_string()).map(|s| s.trim_matches('"').to_string()),
    }
}

/// A key as text: its parts joined by commas; a part with a comma or a
/// double quote, or an empty text, in double quotes (a quote doubled); a
/// NULL part empty. `France,Paris`, `"Paris, TX",US`, `42`.
pub fn key_text(key: &[Value]) -> String {
    let parts: Vec<String> = key
        .iter()
        .map(|v| match value_text(v) {
            None => String::new(),
            Some(t) if t.is_empty() || t.contains([',', '"']) => format!("\"{}\"", t.replace('"', "\"\"")),
            Some(t) => t,
        })
        .collect();
    parts.join(",")
}

/// The parts of a key's text, `None` for a NULL part.
fn split_key(text: &str) -> Result<Vec<Option<String>>, String> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let part = if chars.peek() == Some(&'"') {
            chars.next();
            let mut part = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("a quoted part has no closing quote".into()),
                }
            }
            if !matches!(chars.peek(), None | Some(',')) {
                return Err("a quoted part must end at a comma".into());
            }
            Some(part)
        } else {
            let part: String = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            (!part.is_empty()).then_some(part)
        };
        parts.push(part);
        match chars.next() {
            Some(',') => continue,
            _ => return Ok(parts),
        }
    }
}

/// A key's text as the key's values, by the key columns' types.
pub fn parse_key(text: &str, types: &[SqlType]) -> Result<Row, String> {
    let parts = split_key(text)?;
    if parts.len() != types.len() {
        return Err(format!("expected {} comma-separated key parts, found {}", types.len(), parts.len()));
    }
    parts.into_iter().zip(types).map(|(part, ty)| part.map_or(Ok(Value::Null), |p| parse_value(&p, *ty))).collect()
}

fn parse_value(text: &str, ty: SqlType) -> Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what}");
    Ok(match ty {
        SqlType::Bool => Value::Bool(text.parse().map_err(|_| bad("true or false"))?),
        SqlType::Int => Value::Int(text.parse().map_err(|_| bad("an integer"))?),
        SqlType::Decimal { scale } => {
            let mut d = rust_decimal::Decimal::from_str(text).map_err(|_| bad("a decimal number"))?;
            // Keys are compared with their scale: write 5 as 5.00 when the column has two digits.
            if let Some(scale) = scale {
                d.rescale(scale);
            }
            Value::decimal(d)
        }
        SqlType::Double => Value::Double(text.parse().map_err(|_| bad("a number"))?),
        SqlType::Text => Value::text(text),
        SqlType::Timestamp => {
            let t = chrono::DateTime::parse_from_rfc3339(text).map_err(|_| bad("an RFC 3339 time"))?;
            Value::Timestamp(t.timestamp_micros())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_text() {
        let types = [SqlType::Text, SqlType::Text, SqlType::Int, SqlType::Decimal { scale: Some(2) }];
        for key in [
            vec![Value::text("France"), Value::text("Paris"), Value::Int(3), Value::Decimal("1.50".parse().unwrap())],
            vec![Value::text("Paris, TX"), Value::text("say \"hi\""), Value::Int(-1), Value::Null],
            vec![Value::text(""), Value::Null, Value::Null, Value::Decimal("0.00".parse().unwrap())],
        ] {
            let text = key_text(&key);
            assert_eq!(parse_key(&text, &types).unwrap(), key, "{text}");
        }
        assert_eq!(key_text(&[Value::text("France"), Value::text("Paris")]), "France,Paris");
        assert_eq!(key_text(&[Value::text("Paris, TX"), Value::text("US")]), "\"Paris, TX\",US");
    }

    #[test]
    fn a_bad_key_says_what_is_wrong() {
        assert!(parse_key("1,2", &[SqlType::Int]).unwrap_err().contains("expected 1 comma-separated key parts, found 2"));
        assert!(parse_key("x", &[SqlType::Int]).unwrap_err().contains("\"x\" is not an integer"));
        assert!(parse_key("\"a", &[SqlType::Text]).unwrap_err().contains("no closing quote"));
        assert_eq!(parse_key("5", &[SqlType::Decimal { scale: Some(2) }]).unwrap(), vec![Value::Decimal("5.00".parse().unwrap())]);
    }
}
