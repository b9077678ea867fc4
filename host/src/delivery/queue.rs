//! The delivery queue in memory: pending outbox rows grouped by lane, each lane's head either
//! ready, waiting for its retry time, blocked on its target's concurrency, or in flight. The
//! database stays the record; this is what keeps the scheduler from querying it per attempt.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

// The queue hashes lanes and ids several times per attempt: foldhash, seeded at random per
// process, is several times faster than the standard SipHash and still not predictable from
// outside (lanes contain customers' numbers).
use foldhash::{HashMap, HashSet};

use super::Request;
use crate::store::{DeliveryOutcome, OutboxRow};

/// A stored delivery as the scheduler keeps it: names shared, the request parsed once.
#[derive(Debug)]
pub struct Task {
    pub id: i64,
    /// The partition whose lease covers it.
    pub partition: i32,
    pub kind: String,
    pub target: Arc<str>,
    pub lane: Arc<str>,
    pub webhook_id: String,
    pub created_at: i64,
    /// What to send, or why the stored request does not read as one.
    pub request: Result<Request, String>,
}

impl Task {
    /// The task of `row`, whose request is `parsed` if known, else read from the row.
    fn new(row: OutboxRow, parsed: Option<Request>) -> Task {
        Task {
            request: match parsed {
                Some(request) => Ok(request),
                None => serde_json::from_str(&row.request).map_err(|e| e.to_string()),
            },
            id: row.id,
            partition: row.partition,
            kind: row.kind,
            target: row.target.into(),
            lane: row.lane.into(),
            webhook_id: row.webhook_id,
            created_at: row.created_at,
        }
    }
}

/// One attempt of a task, as [`Queue::next`] hands it out.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub task: Arc<Task>,
    /// Attempts made before this one.
    pub attempts: i64,
}

struct Entry {
    task: Arc<Task>,
    attempts: i64,
    next_at: i64,
}

/// Failed attempts in a row, with no success between them, after which a target counts as
/// down: its next success brings its waiting retries forward (a half-open circuit breaker
/// closing). One failing row among successes never gets there, so it keeps its own backoff.
const DOWN_AFTER: u32 = 3;

/// Pending rows and their scheduling state.
#[derive(Default)]
pub struct Queue {
    lanes: HashMap<Arc<str>, VecDeque<Entry>>,
    known: HashSet<i64>,
    ready_fresh: VecDeque<Arc<str>>,
    ready_retry: VecDeque<Arc<str>>,
    timers: BinaryHeap<Reverse<(i64, Arc<str>)>>,
    blocked: HashMap<Arc<str>, VecDeque<Arc<str>>>,
    per_target: HashMap<Arc<str>, usize>,
    /// Lanes waiting for a timer (others in `timers` are stale).
    timed: HashSet<Arc<str>>,
    /// By target, lanes whose head waits to be retried.
    retrying: HashMap<Arc<str>, HashSet<Arc<str>>>,
    /// By target, failed attempts since its last success.
    failures: HashMap<Arc<str>, u32>,
    /// Targets that came back after being down, with no failure since: retries loaded from
    /// the database for them are due at once.
    recovered: HashSet<Arc<str>>,
    fresh_in_flight: usize,
    retries_in_flight: usize,
    /// Lanes whose head is in flight.
    in_flight: HashSet<Arc<str>>,
    /// Lanes of partitions given up while their head was in flight: gone once it ends.
    released: HashSet<Arc<str>>,
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
    /// Add rows (oldest first), each with its request if already parsed; rows already known
    /// are skipped.
    pub fn add(&mut self, rows: impl IntoIterator<Item = (OutboxRow, Option<Request>)>, now: i64) {
        for (row, parsed) in rows {
            if !self.known.insert(row.id) {
                continue;
            }
            let (attempts, mut next_at) = (row.attempts, row.next_at);
            let task = Arc::new(Task::new(row, parsed));
            if attempts > 0 && self.recovered.contains(&task.target) {
                next_at = next_at.min(now);
            }
            let name = task.lane.clone();
            let lane = self.lanes.entry(name.clone()).or_default();
            let first = lane.is_empty();
            lane.push_back(Entry {
                task,
                attempts,
                next_at,
            });
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

    fn schedule(&mut self, lane: &Arc<str>, now: i64) {
        let Some(head) = self.lanes.get(lane).and_then(|l| l.front()) else {
            return;
        };
        if head.next_at > now {
            self.timers.push(Reverse((head.next_at, lane.clone())));
            self.timed.insert(lane.clone());
            if head.attempts > 0 {
                let target = head.task.target.clone();
                self.retrying
                    .entry(target)
                    .or_default()
                    .insert(lane.clone());
            }
        } else if head.attempts > 0 {
            self.ready_retry.push_back(lane.clone());
        } else {
            self.ready_fresh.push_back(lane.clone());
        }
    }

    /// Move lanes whose retry time has come to ready; returns when the next timer falls due.
    pub fn tick(&mut self, now: i64) -> Option<i64> {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                return Some(*at);
            }
            let Reverse((_, lane)) = self.timers.pop().expect("peeked");
            if !self.timed.remove(&lane) {
                continue;
            }
            if let Some(head) = self.lanes.get(&lane).and_then(|l| l.front())
                && let Some(lanes) = self.retrying.get_mut(&head.task.target)
            {
                lanes.remove(&lane);
            }
            self.schedule(&lane, now);
        }
        None
    }

    /// Count the outcome of an attempt to `target`; on the first success after it was down,
    /// its lanes waiting to retry are due now (the budgets still bound how many go at once).
    fn track_target(&mut self, target: &Arc<str>, outcome: &DeliveryOutcome, now: i64) {
        match outcome {
            DeliveryOutcome::Retry { .. } => {
                *self.failures.entry(target.clone()).or_default() += 1;
                self.recovered.remove(target);
            }
            DeliveryOutcome::Delivered => {
                if self.failures.remove(target).unwrap_or(0) < DOWN_AFTER {
                    return;
                }
                self.recovered.insert(target.clone());
                // Oldest first, as they were queued.
                let mut due: Vec<(i64, Arc<str>)> = Vec::new();
                for lane in self.retrying.remove(target).unwrap_or_default() {
                    if !self.timed.remove(&lane) {
                        continue;
                    }
                    if let Some(head) = self.lanes.get_mut(&lane).and_then(|l| l.front_mut()) {
                        head.next_at = head.next_at.min(now);
                        due.push((head.task.id, lane));
                    }
                }
                due.sort();
                for (_, lane) in due {
                    self.schedule(&lane, now);
                }
            }
            DeliveryOutcome::Dead { .. } => {}
        }
    }

    /// The next head to attempt within `budget`, marked in flight.
    pub fn next(&mut self, budget: &Budget) -> Option<Attempt> {
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
                let busy = match self.per_target.get_mut(&head.task.target) {
                    Some(busy) => busy,
                    None => self.per_target.entry(head.task.target.clone()).or_default(),
                };
                if *busy >= budget.per_target {
                    let target = head.task.target.clone();
                    self.blocked.entry(target).or_default().push_back(lane);
                    continue;
                }
                *busy += 1;
                self.in_flight.insert(lane.clone());
                if retries {
                    self.retries_in_flight += 1;
                } else {
                    self.fresh_in_flight += 1;
                }
                return Some(Attempt {
                    task: head.task.clone(),
                    attempts: head.attempts,
                });
            }
        }
        None
    }

    /// Record the outcome of `attempt` (as [`Queue::next`] returned it, the head of its lane),
    /// and schedule what comes next.
    pub fn finish(&mut self, attempt: &Attempt, outcome: &DeliveryOutcome, now: i64) {
        let task = &attempt.task;
        if attempt.attempts > 0 {
            self.retries_in_flight -= 1;
        } else {
            self.fresh_in_flight -= 1;
        }
        if let Some(busy) = self.per_target.get_mut(&task.target) {
            *busy = busy.saturating_sub(1);
        }
        if let Some(waiting) = self
            .blocked
            .get_mut(&task.target)
            .and_then(|q| q.pop_front())
        {
            self.schedule(&waiting, now);
        }
        self.track_target(&task.target, outcome, now);
        self.in_flight.remove(&task.lane);
        if self.released.remove(&task.lane) {
            // Its partition's new owner carries it on; a retry's row is no longer this host's.
            self.lanes.remove(&task.lane);
            if matches!(outcome, DeliveryOutcome::Retry { .. }) {
                self.known.remove(&task.id);
            }
            return;
        }
        let Some(lane) = self.lanes.get_mut(&task.lane) else {
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
                    self.lanes.remove(&task.lane);
                }
            }
        }
        self.schedule(&task.lane, now);
    }

    /// Drop the lanes of partitions no longer held (`keep` says which are); a lane whose head
    /// is in flight goes when that attempt ends. Returns how many rows were dropped.
    pub fn release(&mut self, keep: impl Fn(i32) -> bool) -> usize {
        let gone: Vec<Arc<str>> = self
            .lanes
            .iter()
            .filter(|(_, l)| l.front().is_some_and(|e| !keep(e.task.partition)))
            .map(|(name, _)| name.clone())
            .collect();
        let mut dropped = 0;
        for name in gone {
            let flying = self.in_flight.contains(&name);
            let Some(lane) = self.lanes.get_mut(&name) else {
                continue;
            };
            let target = lane.front().map(|e| e.task.target.clone());
            for entry in lane.drain(usize::from(flying)..) {
                self.known.remove(&entry.task.id);
                dropped += 1;
            }
            if let Some(lanes) = target.and_then(|t| self.retrying.get_mut(&t)) {
                lanes.remove(&name);
            }
            self.timed.remove(&name);
            if flying {
                self.released.insert(name);
            } else {
                self.lanes.remove(&name);
            }
        }
        dropped
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

    fn row(id: i64, lane: &str, target: &str) -> (OutboxRow, Option<Request>) {
        let row = OutboxRow {
            id,
            partition: 0,
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
        };
        (row, None)
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
            (first.task.id, second.task.id),
            (1, 3),
            "row 2 waits for row 1 of its lane"
        );
        assert!(q.next(&WIDE).is_none());
        q.finish(&first, &DeliveryOutcome::Delivered, 0);
        assert_eq!(q.next(&WIDE).unwrap().task.id, 2);
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
        assert_eq!(other.task.id, 3);
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
        assert_eq!((retried.task.id, retried.attempts), (1, 1));
    }

    #[test]
    fn lanes_of_partitions_given_up_go_and_one_in_flight_goes_when_its_attempt_ends() {
        let mut q = Queue::default();
        let in_partition = |id, lane: &str, partition| {
            let (mut r, p) = row(id, lane, "t");
            r.partition = partition;
            (r, p)
        };
        q.add(
            [
                in_partition(1, "a", 1),
                in_partition(2, "a", 1),
                in_partition(3, "b", 1),
                in_partition(4, "c", 2),
            ],
            0,
        );
        let flying = q.next(&WIDE).unwrap();
        assert_eq!(flying.task.id, 1);
        assert_eq!(q.release(|p| p == 2), 2, "rows 2 and 3 go; 1 is in flight");
        assert!(!q.knows(2) && !q.knows(3) && q.knows(1) && q.knows(4));
        assert_eq!(
            q.next(&WIDE).unwrap().task.id,
            4,
            "only partition 2 goes on"
        );
        assert!(q.next(&WIDE).is_none());
        q.finish(&flying, &retry_at(5), 1);
        q.tick(10);
        assert!(
            q.next(&WIDE).is_none(),
            "the lane given up is not retried here"
        );
        assert!(!q.knows(1));
        assert_eq!(q.in_flight(), 1);
    }

    fn retry_at(at: i64) -> DeliveryOutcome {
        DeliveryOutcome::Retry {
            at,
            error: "503".into(),
        }
    }

    #[test]
    fn a_target_back_from_an_outage_gets_its_waiting_retries_at_once_within_its_budget() {
        let mut q = Queue::default();
        q.add((1..=4).map(|i| row(i, &format!("l{i}"), "t")), 0);
        q.add([row(9, "other", "u")], 0);
        // The outage: every row fails, each with its own (long, growing) backoff.
        for i in 1..=4 {
            let a = q.next(&WIDE).unwrap();
            assert_eq!(a.task.id, i);
            q.finish(&a, &retry_at(1_000_000 * i), 10);
        }
        let other = q.next(&WIDE).unwrap();
        q.finish(&other, &retry_at(5_000_000), 10);
        assert!(q.next(&WIDE).is_none());
        // A fresh row on the same target gets through: the target is back.
        q.add([row(5, "l5", "t")], 20);
        let fresh = q.next(&WIDE).unwrap();
        assert_eq!(fresh.task.id, 5);
        q.finish(&fresh, &DeliveryOutcome::Delivered, 30);
        // Its waiting retries are due now, two at a time (its concurrency); another target's
        // are not.
        let narrow = Budget {
            per_target: 2,
            ..WIDE
        };
        let (a, b) = (q.next(&narrow).unwrap(), q.next(&narrow).unwrap());
        assert_eq!((a.task.id, b.task.id, a.attempts), (1, 2, 1));
        assert!(q.next(&narrow).is_none(), "within the target's concurrency");
        q.finish(&a, &DeliveryOutcome::Delivered, 40);
        assert_eq!(q.next(&narrow).unwrap().task.id, 3);
        q.finish(&b, &DeliveryOutcome::Delivered, 40);
        assert_eq!(q.next(&narrow).unwrap().task.id, 4);
        assert!(
            q.next(&narrow).is_none(),
            "the other target keeps its backoff"
        );
        // The stale timers of the rows brought forward do not start them a second time.
        q.tick(10_000_000);
        assert_eq!(q.next(&WIDE).unwrap().task.id, 9);
        assert!(q.next(&WIDE).is_none());
    }

    #[test]
    fn one_failing_row_among_successes_keeps_its_own_backoff() {
        let mut q = Queue::default();
        q.add([row(1, "poison", "t")], 0);
        let a = q.next(&WIDE).unwrap();
        q.finish(&a, &retry_at(1_000), 0);
        for i in 2..6 {
            q.add([row(i, &format!("l{i}"), "t")], 0);
            let ok = q.next(&WIDE).unwrap();
            assert_eq!(ok.task.id, i);
            q.finish(&ok, &DeliveryOutcome::Delivered, 0);
        }
        assert!(
            q.next(&WIDE).is_none(),
            "the failing row waits for its time"
        );
        q.tick(1_000);
        assert_eq!(q.next(&WIDE).unwrap().task.id, 1);
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
            q.next(&narrow).unwrap().task.id,
            3,
            "another target is not held up"
        );
        assert!(q.next(&narrow).is_none());
        q.finish(&first, &DeliveryOutcome::Delivered, 0);
        assert_eq!(q.next(&narrow).unwrap().task.id, 2);
    }

    #[test]
    fn a_request_handed_over_is_not_read_from_the_row_again() {
        let mut q = Queue::default();
        let request = Request::MarkRead {
            message_id: "wamid.1".into(),
            via: Default::default(),
            typing_indicator: false,
        };
        let (stored, _) = row(1, "a", "t");
        q.add([(stored, Some(request.clone())), row(2, "b", "t")], 0);
        let handed = q.next(&WIDE).unwrap();
        assert_eq!(handed.task.request, Ok(request));
        let read = q.next(&WIDE).unwrap();
        assert!(
            read.task.request.is_err(),
            "the row's own text `{{}}` is no request"
        );
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
