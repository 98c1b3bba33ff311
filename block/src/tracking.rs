//! What a node records about the writes passing through it: the highest offset
//! written (query-blockstats' `wr_highest_offset`), its dirty bitmaps and its
//! write threshold. `Node` calls `before_write` before issuing a write-type
//! request and `after_write` once it returns (success or not, as QEMU marks
//! bitmaps and the highest offset regardless of the result).

use crate::dirty_bitmap::DirtyBitmaps;
use crate::write_threshold::{WriteThreshold, WriteThresholdEvent};

/// Per-node write tracking.
#[derive(Debug, Clone, Default)]
pub struct WriteTracking {
    pub wr_highest_offset: u64,
    pub bitmaps: DirtyBitmaps,
    pub threshold: WriteThreshold,
}

impl WriteTracking {
    /// Runs the write threshold check; returns the event to raise, if any.
    pub fn before_write(
        &mut self,
        node_name: &str,
        offset: u64,
        len: u64,
    ) -> Option<WriteThresholdEvent> {
        self.threshold.check_write(node_name, offset, len)
    }

    /// Marks bitmaps and, for data writes, the highest offset.
    pub fn after_write(&mut self, offset: u64, len: u64, is_discard: bool) {
        self.bitmaps.mark(offset, len);
        if !is_discard {
            self.wr_highest_offset = self.wr_highest_offset.max(offset.saturating_add(len));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::events::BlockEvent;
    use crate::node::lock;
    use crate::stats::AcctType;
    use crate::BlockGraph;

    fn null_node(g: &mut BlockGraph, name: &str) -> crate::NodeRef {
        let o = json!({"driver": "null-co", "node-name": name, "size": 1 << 20});
        g.open(o.as_object().unwrap()).unwrap()
    }

    #[test]
    fn node_writes_mark_bitmaps_and_highest_offset() {
        let mut g = BlockGraph::new();
        let n = null_node(&mut g, "n");
        let mut node = lock(&n);
        node.tracking_mut()
            .bitmaps
            .add("b", Some(4096), None, 1 << 20)
            .unwrap();
        node.write(8192, &[1u8; 100], false).unwrap();
        node.write_zeroes(65536, 4096, false).unwrap();
        let b = node.tracking().bitmaps.get("b").unwrap();
        assert_eq!(
            b.dirty_ranges(0).collect::<Vec<_>>(),
            vec![(8192, 4096), (65536, 4096)]
        );
        assert_eq!(node.tracking().wr_highest_offset, 65536 + 4096);
    }

    #[test]
    fn threshold_event_is_raised_once_through_the_node() {
        let mut g = BlockGraph::new();
        let n = null_node(&mut g, "thr");
        lock(&n).tracking_mut().threshold.set(4096);
        lock(&n).write(0, &[1u8; 512], false).unwrap();
        lock(&n).write(4000, &[1u8; 512], false).unwrap();
        lock(&n).write(8192, &[1u8; 512], false).unwrap();
        let ev: Vec<_> = g
            .take_events()
            .into_iter()
            .filter_map(|e| match e {
                BlockEvent::WriteThreshold(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].node_name, "thr");
        assert_eq!(ev[0].amount_exceeded, 416);
        assert_eq!(ev[0].write_threshold, 4096);
        assert_eq!(lock(&n).tracking().threshold.get(), 0);
    }

    #[test]
    fn backend_requests_are_accounted() {
        let mut g = BlockGraph::new();
        let n = null_node(&mut g, "acct");
        g.add_backend("drive0", Some(n)).unwrap();
        let b = g.backend("drive0").unwrap();
        b.write(0, &[0u8; 4096], false).unwrap();
        let mut buf = [0u8; 512];
        b.read(512, &mut buf).unwrap();
        b.read(1 << 20, &mut buf).unwrap_err();
        b.flush().unwrap();
        let s = b.stats();
        assert_eq!(s.bytes(AcctType::Write), 4096);
        assert_eq!(s.ops(AcctType::Read), 1);
        assert_eq!(s.invalid_ops(AcctType::Read), 1);
        assert_eq!(s.ops(AcctType::Flush), 1);
        drop(s);
        b.io_unaccounted(|| b.write(0, &[0u8; 512], false)).unwrap();
        assert_eq!(b.stats().ops(AcctType::Write), 1);
    }
}
