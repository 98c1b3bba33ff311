//! Write threshold (block-set-write-threshold): a per-node offset that, when a
//! write reaches past it, raises BLOCK_WRITE_THRESHOLD once and disarms itself.
//! The check runs before the write is issued, as QEMU's before-write notifier
//! does, so the event fires even if the write then fails.

/// BLOCK_WRITE_THRESHOLD's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteThresholdEvent {
    pub node_name: String,
    pub amount_exceeded: u64,
    pub write_threshold: u64,
}

impl WriteThresholdEvent {
    /// The event's `data` member as QMP sends it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "node-name": self.node_name,
            "amount-exceeded": self.amount_exceeded,
            "write-threshold": self.write_threshold,
        })
    }
}

/// The threshold of one node; 0 means none is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteThreshold {
    offset: u64,
}

impl WriteThreshold {
    /// Sets the threshold in bytes (0 disables it).
    pub fn set(&mut self, offset: u64) {
        self.offset = offset;
    }

    /// The armed threshold, 0 when none (query-named-block-nodes'
    /// `write_threshold`).
    pub fn get(&self) -> u64 {
        self.offset
    }

    pub fn is_set(&self) -> bool {
        self.offset > 0
    }

    /// Bytes by which a write of `len` at `offset` goes past the threshold (0 if not).
    pub fn exceeded(&self, offset: u64, len: u64) -> u64 {
        if !self.is_set() {
            return 0;
        }
        let end = offset.saturating_add(len);
        if offset > self.offset {
            offset - self.offset + len
        } else {
            end.saturating_sub(self.offset)
        }
    }

    /// Checks a write about to happen; when it crosses the threshold, disarms and
    /// returns the event to raise.
    pub fn check_write(
        &mut self,
        node_name: &str,
        offset: u64,
        len: u64,
    ) -> Option<WriteThresholdEvent> {
        let amount = self.exceeded(offset, len);
        if amount == 0 {
            return None;
        }
        let ev = WriteThresholdEvent {
            node_name: node_name.to_string(),
            amount_exceeded: amount,
            write_threshold: self.offset,
        };
        self.offset = 0;
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_then_disarms() {
        let mut t = WriteThreshold::default();
        t.set(1 << 20);
        assert_eq!(t.check_write("n", 0, 4096), None);
        let ev = t.check_write("n", (1 << 20) - 512, 1024).unwrap();
        assert_eq!(ev.amount_exceeded, 512);
        assert_eq!(ev.write_threshold, 1 << 20);
        assert_eq!(
            ev.to_json(),
            serde_json::json!({"node-name": "n", "amount-exceeded": 512, "write-threshold": 1048576})
        );
        assert!(!t.is_set());
        assert_eq!(t.check_write("n", 1 << 21, 4096), None);
    }

    #[test]
    fn write_entirely_past_threshold_counts_the_gap() {
        let mut t = WriteThreshold::default();
        t.set(1000);
        assert_eq!(t.exceeded(2000, 100), 1100);
        assert_eq!(t.exceeded(500, 500), 0);
        assert_eq!(t.exceeded(500, 501), 1);
    }

    #[test]
    fn zero_threshold_never_fires() {
        let mut t = WriteThreshold::default();
        t.set(0);
        assert_eq!(t.check_write("n", u64::MAX - 10, 10), None);
    }
}
