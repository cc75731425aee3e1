//! Packing records into JSON-array chunks of bounded size for the cold tier.

use crate::timestamp::Timestamp;

/// The largest cold object: 1 MB in decimal units, which is also within 1 MiB.
pub const MAX_CHUNK_BYTES: usize = 1_000_000;

/// A JSON array being filled with records, never beyond its byte limit.
#[derive(Debug)]
pub struct ChunkBuilder {
    limit: usize,
    body: Vec<u8>,
    ids: Vec<Timestamp>,
}

/// A finished chunk: the JSON array's bytes and the ids of the records inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// `[rec,rec,...]`.
    pub body: Vec<u8>,
    /// The records' ids, in the order written.
    pub ids: Vec<Timestamp>,
}

impl ChunkBuilder {
    /// An empty chunk that will not exceed `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            body: Vec::with_capacity(limit.min(MAX_CHUNK_BYTES) + 2),
            ids: Vec::new(),
        }
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The size the finished chunk would have with `record` (one serialized JSON object) added.
    pub fn size_with(&self, record: &[u8]) -> usize {
        // `[` + records joined by `,` + `]`.
        let current = if self.is_empty() { 1 } else { self.body.len() };
        current + usize::from(!self.is_empty()) + record.len() + 1
    }

    /// Whether `record` fits. A record that would not fit even an empty chunk is accepted alone
    /// (records are never split or dropped); with DynamoDB's 400 KB item limit it cannot happen.
    pub fn fits(&self, record: &[u8]) -> bool {
        self.is_empty() || self.size_with(record) <= self.limit
    }

    /// Adds a record; callers check [`ChunkBuilder::fits`] first.
    pub fn push(&mut self, id: Timestamp, record: &[u8]) {
        self.body.push(if self.is_empty() { b'[' } else { b',' });
        self.body.extend_from_slice(record);
        self.ids.push(id);
    }

    /// Closes the array and returns the chunk, leaving this builder empty.
    pub fn take(&mut self) -> Chunk {
        let mut body = std::mem::take(&mut self.body);
        if body.is_empty() {
            body.push(b'[');
        }
        body.push(b']');
        Chunk {
            body,
            ids: std::mem::take(&mut self.ids),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    /// A JSON object of exactly `len` bytes.
    fn record(len: usize) -> Vec<u8> {
        let pad = len - r#"{"p":""}"#.len();
        format!(r#"{{"p":"{}"}}"#, "x".repeat(pad)).into_bytes()
    }

    #[test]
    fn a_chunk_of_exactly_the_limit_is_accepted() {
        // Two records fill 1 + a + 1 + b + 1 bytes.
        let a = record(400_000);
        let b = record(MAX_CHUNK_BYTES - 3 - a.len());
        let mut c = ChunkBuilder::new(MAX_CHUNK_BYTES);
        assert!(c.fits(&a));
        c.push(ts(1), &a);
        assert_eq!(c.size_with(&b), MAX_CHUNK_BYTES);
        assert!(c.fits(&b));
        c.push(ts(2), &b);
        let chunk = c.take();
        assert_eq!(chunk.body.len(), MAX_CHUNK_BYTES);
        let parsed: Vec<serde_json::Value> = serde_json::from_slice(&chunk.body).unwrap();
        assert_eq!(parsed.len(), 2);
    }

    #[test]
    fn one_byte_over_the_limit_starts_a_new_chunk() {
        let a = record(400_000);
        let b = record(MAX_CHUNK_BYTES - 3 - a.len() + 1);
        let mut c = ChunkBuilder::new(MAX_CHUNK_BYTES);
        c.push(ts(1), &a);
        assert_eq!(c.size_with(&b), MAX_CHUNK_BYTES + 1);
        assert!(!c.fits(&b));
    }

    #[test]
    fn a_single_record_of_the_limit_fits_alone() {
        let a = record(MAX_CHUNK_BYTES - 2);
        let mut c = ChunkBuilder::new(MAX_CHUNK_BYTES);
        assert!(c.fits(&a));
        c.push(ts(1), &a);
        assert_eq!(c.take().body.len(), MAX_CHUNK_BYTES);
        assert!(c.is_empty());
    }

    #[test]
    fn take_resets_and_keeps_ids_in_order() {
        let mut c = ChunkBuilder::new(100);
        c.push(ts(1), b"{}");
        c.push(ts(2), b"{}");
        let chunk = c.take();
        assert_eq!(chunk.body, b"[{},{}]");
        assert_eq!(chunk.ids, vec![ts(1), ts(2)]);
        assert!(c.is_empty());
        assert_eq!(c.take().body, b"[]");
    }
}
