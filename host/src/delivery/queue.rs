//! The delivery queue in memory: pending outbox rows grouped by lane, each lane's head either
//! ready, waiting for its retry time, blocked on its target's concurrency, or in flight. The
//! database stays the record; this is what keeps the scheduler from querying it per attempt.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};

use crate::store::{DeliveryOutcome, OutboxRow};

/// Pending rows and their scheduling state.
#[derive(Default)]
pub struct Queue {
    lanes: HashMap<String, VecDeque<OutboxRow>>,
    known: HashSet<i64>,
    ready_fresh: VecDeque<String>,
    ready_retry: VecDeque<String>,
    timers: BinaryHeap<Reverse<(i64, String)>>,
    blocked: HashMap<String, VecDeque<String>>,
    per_target: HashMap<String, usize>,
    fresh_in_flight: usize,
    retries_in_flight: usize,
}

/// What the scheduler may start at once.
pub struct Budget {
    /// First attempts in flight at most.
    pub fresh: usize,
    /// Retries in flight at most.
    pub retries: usize,
    /// Attempts in flight per target at most.
    pub per_target: usize,
}

impl Queue {
    /// Add rows (oldest first); rows already known are skipped.
    pub fn add(&mut self, rows: impl IntoIterator<Item = OutboxRow>, now: i64) {
        for row in rows {
            if !self.known.insert(row.id) {
                continue;
            }
            let lane = self.lanes.entry(row.lane.clone()).or_default();
            let first = lane.is_empty();
            let name = row.lane.clone();
            lane.push_back(row);
            if first {
                self.schedule(&name, now);
            }
        }
    }

    /// Whether row `id` is queued (or in flight, or its outcome not yet recorded).
    pub fn knows(&self, id: i64) -> bool {
        self.known.contains(&id)
    }

    /// Rows held: queued, in flight, or with an outcome not yet recorded.
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// Attempts in flight.
    pub fn in_flight(&self) -> usize {
        self.fresh_in_flight + self.retries_in_flight
    }

    fn schedule(&mut self, lane: &str, now: i64) {
        let Some(head) = self.lanes.get(lane).and_then(|l| l.front()) else {
            return;
        };
        if head.next_at > now {
            self.timers.push(Reverse((head.next_at, lane.to_string())));
        } else if head.attempts > 0 {
            self.ready_retry.push_back(lane.to_string());
        } else {
            self.ready_fresh.push_back(lane.to_string());
        }
    }

    /// Move lanes whose retry time has come to ready; returns when the next timer falls due.
    pub fn tick(&mut self, now: i64) -> Option<i64> {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                return Some(*at);
            }
            let Reverse((_, lane)) = self.timers.pop().expect("peeked");
            self.schedule(&lane, now);
        }
        None
    }

    /// The next head to attempt within `budget`, marked in flight.
    pub fn next(&mut self, budget: &Budget) -> Option<OutboxRow> {
        for retries in [false, true] {
            let (in_flight, limit) = if retries {
                (self.retries_in_flight, budget.retries)
            } else {
                (self.fresh_in_flight, budget.fresh)
            };
            if in_flight >= limit {
                continue;
            }
            while let Some(lane) = if retries {
                self.ready_retry.pop_front()
            } else {
                self.ready_fresh.pop_front()
            } {
                let Some(head) = self.lanes.get(&lane).and_then(|l| l.front()) else {
                    continue;
                };
                let target = head.target.clone();
                let busy = self.per_target.entry(target.clone()).or_default();
                if *busy >= budget.per_target {
                    self.blocked.entry(target).or_default().push_back(lane);
                    continue;
                }
                *busy += 1;
                if retries {
                    self.retries_in_flight += 1;
                } else {
                    self.fresh_in_flight += 1;
                }
                return Some(head.clone());
            }
        }
        None
    }

    /// Record the outcome of the head of `row`'s lane (as [`Queue::next`] returned it), and
    /// schedule what comes next.
    pub fn finish(&mut self, row: &OutboxRow, outcome: &DeliveryOutcome, now: i64) {
        if row.attempts > 0 {
            self.retries_in_flight -= 1;
        } else {
            self.fresh_in_flight -= 1;
        }
        if let Some(busy) = self.per_target.get_mut(&row.target) {
            *busy = busy.saturating_sub(1);
        }
        if let Some(waiting) = self
            .blocked
            .get_mut(&row.target)
            .and_then(|q| q.pop_front())
        {
            self.schedule(&waiting, now);
        }
        let Some(lane) = self.lanes.get_mut(&row.lane) else {
            return;
        };
        match outcome {
            DeliveryOutcome::Retry { at, .. } => {
                if let Some(head) = lane.front_mut() {
                    head.attempts += 1;
                    head.next_at = *at;
                }
            }
            DeliveryOutcome::Delivered | DeliveryOutcome::Dead { .. } => {
                lane.pop_front();
                if lane.is_empty() {
                    self.lanes.remove(&row.lane);
                }
            }
        }
        self.schedule(&row.lane, now);
    }

    /// Forget rows whose final outcome is recorded in the database.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = i64>) {
        for id in ids {
            self.known.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OutboxState;

    fn row(id: i64, lane: &str, target: &str) -> OutboxRow {
        OutboxRow {
            id,
            kind: "forward".into(),
            target: target.into(),
            lane: lane.into(),
            webhook_id: format!("w{id}"),
            request: "{}".into(),
            state: OutboxState::Pending,
            attempts: 0,
            created_at: 0,
            next_at: 0,
            last_error: None,
        }
    }

    const WIDE: Budget = Budget {
        fresh: 100,
        retries: 100,
        per_target: 100,
    };

    #[test]
    fn a_lane_goes_out_in_order_one_at_a_time() {
        let mut q = Queue::default();
        q.add([row(1, "a", "t"), row(2, "a", "t"), row(3, "b", "t")], 0);
        let first = q.next(&WIDE).unwrap();
        let second = q.next(&WIDE).unwrap();
        assert_eq!(
            (first.id, second.id),
            (1, 3),
            "row 2 waits for row 1 of its lane"
        );
        assert!(q.next(&WIDE).is_none());
        q.finish(&first, &DeliveryOutcome::Delivered, 0);
        assert_eq!(q.next(&WIDE).unwrap().id, 2);
    }

    #[test]
    fn a_retry_holds_its_lane_until_due_and_uses_the_retry_budget() {
        let mut q = Queue::default();
        q.add([row(1, "a", "t"), row(2, "a", "t"), row(3, "b", "t")], 0);
        let first = q.next(&WIDE).unwrap();
        q.finish(
            &first,
            &DeliveryOutcome::Retry {
                at: 100,
                error: "503".into(),
            },
            10,
        );
        let other = q.next(&WIDE).unwrap();
        assert_eq!(other.id, 3);
        assert!(
            q.next(&WIDE).is_none(),
            "row 2 stays behind the retrying row 1"
        );
        assert_eq!(q.tick(50), Some(100));
        assert!(q.next(&WIDE).is_none());
        q.tick(100);
        let no_retries = Budget { retries: 0, ..WIDE };
        assert!(
            q.next(&no_retries).is_none(),
            "a retry needs the retry budget"
        );
        let retried = q.next(&WIDE).unwrap();
        assert_eq!((retried.id, retried.attempts), (1, 1));
    }

    #[test]
    fn per_target_concurrency_blocks_and_releases() {
        let mut q = Queue::default();
        q.add([row(1, "a", "t"), row(2, "b", "t"), row(3, "c", "u")], 0);
        let narrow = Budget {
            per_target: 1,
            ..WIDE
        };
        let first = q.next(&narrow).unwrap();
        assert_eq!(
            q.next(&narrow).unwrap().id,
            3,
            "another target is not held up"
        );
        assert!(q.next(&narrow).is_none());
        q.finish(&first, &DeliveryOutcome::Delivered, 0);
        assert_eq!(q.next(&narrow).unwrap().id, 2);
    }

    #[test]
    fn known_rows_are_not_added_twice() {
        let mut q = Queue::default();
        q.add([row(1, "a", "t")], 0);
        q.add([row(1, "a", "t")], 0);
        let first = q.next(&WIDE).unwrap();
        q.finish(
            &first,
            &DeliveryOutcome::Dead {
                error: "400".into(),
            },
            0,
        );
        assert!(q.next(&WIDE).is_none());
        assert!(q.knows(1), "known until the outcome is recorded");
        q.forget([1]);
        assert!(!q.knows(1));
    }
}
