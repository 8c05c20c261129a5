//! Drops records already applied, so redelivery after a restart is harmless.

use super::IdMap;
use crate::change::SourcePos;

/// Remembers the highest offset applied per stream. A stream is one topic
/// partition, where Kafka keeps order, so anything at or below that offset
/// has been applied already.
#[derive(Default, Debug, Clone)]
pub struct Deduplicator {
    applied: IdMap<i64>,
}

impl Deduplicator {
    /// True when the record at `pos` is new; records it as applied.
    pub fn accept(&mut self, pos: Option<SourcePos>) -> bool {
        let Some(pos) = pos else { return true };
        match self.applied.get_mut(i64::from(pos.stream)) {
            Some(last) if *last >= pos.offset => false,
            Some(last) => {
                *last = pos.offset;
                true
            }
            None => {
                self.applied.insert(i64::from(pos.stream), pos.offset);
                true
            }
        }
    }

    /// The highest offset applied on `stream`, if any.
    pub fn applied(&self, stream: u32) -> Option<i64> {
        self.applied.get(i64::from(stream)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(stream: u32, offset: i64) -> Option<SourcePos> {
        Some(SourcePos { stream, offset })
    }

    #[test]
    fn redelivered_offsets_are_rejected_per_stream() {
        let mut d = Deduplicator::default();
        assert!(d.accept(at(0, 5)));
        assert!(!d.accept(at(0, 5)));
        assert!(!d.accept(at(0, 3)));
        assert!(d.accept(at(1, 3)));
        assert!(d.accept(at(0, 6)));
        assert!(d.accept(None));
        assert_eq!(d.applied(0), Some(6));
    }
}
