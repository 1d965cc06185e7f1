//! Per-loop timers: a min-heap of connection deadlines.
//!
//! Entries are never removed early. A connection remembers the earliest deadline it has in
//! the heap; entries that fire for a connection that has since moved its deadline, or for a
//! slot that has been reused (older generation), are simply ignored by the loop.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// One armed deadline: when, and which connection (slab index and generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    pub at: Instant,
    pub index: usize,
    pub generation: u64,
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Deadline>>,
}

impl Timers {
    pub fn push(&mut self, deadline: Deadline) {
        self.heap.push(Reverse(deadline));
    }

    /// The earliest armed deadline, if any.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(d)| d.at)
    }

    /// Removes and returns the earliest deadline if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Deadline> {
        match self.heap.peek() {
            Some(Reverse(d)) if d.at <= now => self.heap.pop().map(|Reverse(d)| d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let base = Instant::now();
        let mut timers = Timers::default();
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            timers.push(Deadline {
                at: base + Duration::from_millis(ms),
                index: i,
                generation: 0,
            });
        }
        assert_eq!(timers.next(), Some(base + Duration::from_millis(10)));
        assert!(timers.pop_due(base).is_none());
        let due = base + Duration::from_millis(20);
        assert_eq!(timers.pop_due(due).map(|d| d.index), Some(1));
        assert_eq!(timers.pop_due(due).map(|d| d.index), Some(2));
        assert!(timers.pop_due(due).is_none());
        assert_eq!(timers.next(), Some(base + Duration::from_millis(30)));
    }
}
