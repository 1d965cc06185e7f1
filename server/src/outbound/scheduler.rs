//! What is due when, and which worker may take what: the in-memory state of the delivery
//! service.
//!
//! Every queued message has a slot with the time it is next due. The scheduler thread
//! turns due messages into jobs: one per next hop, holding that message's recipients
//! behind it (a "round"). Workers take jobs under a per-next-hop connection limit, and a
//! worker with an open connection takes further jobs for the same next hop before closing
//! it. When the last job of a round is done the round is finished (DSN for new failures,
//! then the message leaves the queue or gets its next due time).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::retry::Failure;
use super::route::{NextHop, Router};
use crate::queue::{now_ms, Meta};

/// Recipients in one transaction; more go in further jobs.
const MAX_RCPTS_PER_JOB: usize = 100;

/// A queued message as the delivery service holds it.
pub struct Entry {
    pub id: String,
    /// The authoritative state; saved to the queue file on every change. Locked only by
    /// the worker holding one of the message's jobs (or by the scheduler while no job of it
    /// exists), so never for long by anyone else.
    pub meta: Mutex<Meta>,
}

impl Entry {
    pub fn lock(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Recipients of one message for one next hop.
pub struct Task {
    pub entry: Arc<Entry>,
    pub hop: NextHop,
    /// Indices into the message's recipients.
    pub rcpts: Vec<usize>,
}

pub enum Job {
    Deliver(Task),
    /// Nothing to send, but the round must be finished (failures to report, or a
    /// recovered message with nothing pending).
    Finish(Arc<Entry>),
}

struct Slot {
    entry: Arc<Entry>,
    /// When it is next due; `None` while a round is under way.
    due: Option<u64>,
    /// Deliver jobs of the current round not yet completed.
    in_flight: usize,
}

#[derive(Default)]
struct State {
    slots: HashMap<String, Slot>,
    due: BTreeSet<(u64, String)>,
    jobs: VecDeque<Job>,
    /// Connections (busy workers) per next hop.
    active: HashMap<NextHop, usize>,
    /// Next hops where no host could be reached, until when: jobs for them fail at once
    /// instead of each waiting for its own connection timeouts.
    dead: HashMap<NextHop, (Instant, Failure)>,
    /// Workers inside a job.
    busy: usize,
    /// Everything pending is due now (`queue flush`): the next dispatch ignores attempt
    /// times.
    flush: bool,
    shutdown: bool,
}

/// The state shared by the scheduler thread and the workers.
pub struct Scheduler {
    state: Mutex<State>,
    /// The scheduler thread waits here for new messages, finished rounds and flushes.
    wake_scheduler: Condvar,
    /// Workers wait here for jobs.
    wake_workers: Condvar,
    /// Signalled whenever a worker goes idle (for shutdown).
    idle: Condvar,
    router: Router,
    per_destination: usize,
    /// How long a next hop is considered unreachable after every host failed.
    dead_for: Duration,
}

impl Scheduler {
    pub fn new(router: Router, per_destination: usize, dead_for: Duration) -> Scheduler {
        Scheduler {
            state: Mutex::new(State::default()),
            wake_scheduler: Condvar::new(),
            wake_workers: Condvar::new(),
            idle: Condvar::new(),
            router,
            per_destination: per_destination.max(1),
            dead_for,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message entered the queue (or was found there at start-up): due at its earliest
    /// pending recipient's time, or now.
    pub fn add(&self, meta: Meta) {
        let id = meta.id.clone();
        let due = meta.next_due_ms().unwrap_or(0);
        let entry = Arc::new(Entry {
            id: id.clone(),
            meta: Mutex::new(meta),
        });
        let mut st = self.lock();
        if st.slots.contains_key(&id) {
            return;
        }
        st.slots.insert(
            id.clone(),
            Slot {
                entry,
                due: Some(due),
                in_flight: 0,
            },
        );
        st.due.insert((due, id));
        drop(st);
        self.wake_scheduler.notify_one();
    }

    /// Messages the service holds.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes everything due now (`ironpost queue flush`).
    pub fn flush(&self) {
        let mut st = self.lock();
        st.flush = true;
        st.dead.clear();
        let ids: Vec<(u64, String)> = st.due.iter().cloned().collect();
        for (t, id) in ids {
            st.due.remove(&(t, id.clone()));
            st.due.insert((0, id.clone()));
            if let Some(s) = st.slots.get_mut(&id) {
                s.due = Some(0);
            }
        }
        drop(st);
        self.wake_scheduler.notify_one();
    }

    /// Turns every message due at `now` into jobs; returns how long the scheduler may
    /// sleep before the next one is due. `exists` tells whether a message is still in
    /// the queue (it may have been deleted from the command line).
    pub fn dispatch_due(&self, exists: &dyn Fn(&str) -> bool) -> Option<Duration> {
        let now = now_ms();
        let mut st = self.lock();
        if st.shutdown {
            return None;
        }
        let force = std::mem::take(&mut st.flush);
        let mut added = false;
        while let Some((t, id)) = st.due.first().cloned() {
            if t > now {
                break;
            }
            st.due.pop_first();
            let Some(slot) = st.slots.get(&id) else {
                continue;
            };
            if !exists(&id) {
                tracing::info!(queue_id = %id, "removed from the queue (deleted)");
                st.slots.remove(&id);
                continue;
            }
            let entry = slot.entry.clone();
            let jobs = self.plan(&entry, now, force);
            let slot = st.slots.get_mut(&id).expect("looked up above");
            slot.due = None;
            if jobs.is_empty() {
                st.jobs.push_back(Job::Finish(entry));
            } else {
                slot.in_flight = jobs.len();
                st.jobs.extend(jobs.into_iter().map(Job::Deliver));
            }
            added = true;
        }
        let next = st.due.first().map(|(t, _)| *t);
        drop(st);
        if added {
            self.wake_workers.notify_all();
        }
        Some(match next {
            Some(t) => Duration::from_millis(t.saturating_sub(now)),
            None => Duration::from_secs(3600),
        })
    }

    /// One message's jobs: its due pending recipients grouped by next hop.
    fn plan(&self, entry: &Arc<Entry>, now: u64, force: bool) -> Vec<Task> {
        let meta = entry.lock();
        let mut tasks: Vec<Task> = Vec::new();
        for (i, r) in meta.pending() {
            if !force && r.next_attempt_ms > now {
                continue;
            }
            let domain = r.address.rsplit_once('@').map_or("", |(_, d)| d);
            let hop = self.router.next_hop(domain);
            match tasks
                .iter_mut()
                .find(|t| t.hop == hop && t.rcpts.len() < MAX_RCPTS_PER_JOB)
            {
                Some(t) => t.rcpts.push(i),
                None => tasks.push(Task {
                    entry: entry.clone(),
                    hop,
                    rcpts: vec![i],
                }),
            }
        }
        tasks
    }

    /// Blocks until the scheduler should look again (or `timeout`).
    pub fn wait(&self, timeout: Duration) {
        let st = self.lock();
        if st.shutdown {
            return;
        }
        let _ = self
            .wake_scheduler
            .wait_timeout(st, timeout)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// The next job a worker may take (respecting the per-next-hop limit), blocking until
    /// there is one; `None` at shutdown.
    pub fn take(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if st.shutdown {
                return None;
            }
            let limit = self.per_destination;
            let pick = st.jobs.iter().position(|j| match j {
                Job::Finish(_) => true,
                Job::Deliver(t) => st.active.get(&t.hop).copied().unwrap_or(0) < limit,
            });
            if let Some(i) = pick {
                let job = st.jobs.remove(i).expect("index from position");
                if let Job::Deliver(t) = &job {
                    *st.active.entry(t.hop.clone()).or_insert(0) += 1;
                }
                st.busy += 1;
                return Some(job);
            }
            st = self
                .wake_workers
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Another job for the next hop a worker holds a connection to (no wait).
    pub fn take_for(&self, hop: &NextHop) -> Option<Task> {
        let mut st = self.lock();
        if st.shutdown {
            return None;
        }
        let i = st
            .jobs
            .iter()
            .position(|j| matches!(j, Job::Deliver(t) if t.hop == *hop))?;
        match st.jobs.remove(i) {
            Some(Job::Deliver(t)) => Some(t),
            _ => None,
        }
    }

    /// A worker is done with a next hop (its connection closed).
    pub fn release(&self, hop: &NextHop) {
        let mut st = self.lock();
        if let Some(n) = st.active.get_mut(hop) {
            *n -= 1;
            if *n == 0 {
                st.active.remove(hop);
            }
        }
        drop(st);
        // A job for this hop may have been waiting for the slot.
        self.wake_workers.notify_all();
    }

    /// A worker finished a job (of any kind) and is idle again.
    pub fn idle(&self) {
        let mut st = self.lock();
        st.busy -= 1;
        drop(st);
        self.idle.notify_all();
    }

    /// One deliver job of a message completed; true if it was the round's last (the
    /// caller then finishes the round).
    pub fn complete(&self, entry: &Entry) -> bool {
        let mut st = self.lock();
        match st.slots.get_mut(&entry.id) {
            Some(s) => {
                s.in_flight = s.in_flight.saturating_sub(1);
                s.in_flight == 0
            }
            None => false,
        }
    }

    /// A round is finished: the message is due again at `next`, or (None) gone.
    pub fn finished(&self, entry: &Entry, next: Option<u64>) {
        let mut st = self.lock();
        match next {
            Some(t) => {
                if let Some(s) = st.slots.get_mut(&entry.id) {
                    s.due = Some(t);
                    st.due.insert((t, entry.id.clone()));
                }
            }
            None => {
                st.slots.remove(&entry.id);
            }
        }
        drop(st);
        self.wake_scheduler.notify_one();
    }

    /// Whether a next hop was recently found unreachable, and why.
    pub fn dead(&self, hop: &NextHop) -> Option<Failure> {
        let mut st = self.lock();
        match st.dead.get(hop) {
            Some((until, f)) if *until > Instant::now() => Some(f.clone()),
            Some(_) => {
                st.dead.remove(hop);
                None
            }
            None => None,
        }
    }

    pub fn mark_dead(&self, hop: &NextHop, why: &Failure) {
        if self.dead_for.is_zero() {
            return;
        }
        self.lock()
            .dead
            .insert(hop.clone(), (Instant::now() + self.dead_for, why.clone()));
    }

    pub fn mark_alive(&self, hop: &NextHop) {
        self.lock().dead.remove(hop);
    }

    /// Stops handing out jobs; waits up to `grace` for workers in a job to finish it.
    /// Returns whether they all did.
    pub fn shutdown(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let mut st = self.lock();
        st.shutdown = true;
        self.wake_workers.notify_all();
        self.wake_scheduler.notify_all();
        while st.busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .idle
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub fn is_shut_down(&self) -> bool {
        self.lock().shutdown
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{RecipientState, META_VERSION};

    fn meta(id: &str, rcpts: &[&str], due: u64) -> Meta {
        Meta {
            version: META_VERSION,
            id: id.into(),
            from: "a@example.test".into(),
            arrived_ms: 0,
            size: 1,
            eight_bit: false,
            smtputf8: false,
            recipients: rcpts
                .iter()
                .map(|r| RecipientState::new(r.to_string(), None, due))
                .collect(),
        }
    }

    fn hop(s: &str) -> NextHop {
        NextHop::parse(s).unwrap()
    }

    fn sched() -> Scheduler {
        Scheduler::new(
            Router::new(vec![("routed.test".into(), hop("127.0.0.1:2626"))], None),
            2,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn recipients_group_by_next_hop() {
        let s = sched();
        s.add(meta(
            "M1",
            &[
                "a@routed.test",
                "b@x.test",
                "c@ROUTED.test",
                "d@x.test",
                "e@y.test",
            ],
            0,
        ));
        s.dispatch_due(&|_| true);
        let mut got = Vec::new();
        for _ in 0..3 {
            match s.take().unwrap() {
                Job::Deliver(t) => got.push((t.hop.to_string(), t.rcpts.clone())),
                Job::Finish(_) => panic!("finish before deliveries"),
            }
        }
        got.sort();
        assert_eq!(
            got,
            vec![
                ("[127.0.0.1]:2626".to_string(), vec![0, 2]),
                ("x.test".to_string(), vec![1, 3]),
                ("y.test".to_string(), vec![4]),
            ]
        );
        let e = s.lock().slots["M1"].entry.clone();
        assert!(!s.complete(&e));
        assert!(!s.complete(&e));
        assert!(s.complete(&e));
        s.finished(&e, None);
        assert!(s.is_empty());
    }

    #[test]
    fn not_due_yet_is_not_dispatched_until_flush() {
        let s = sched();
        let later = now_ms() + 3_600_000;
        s.add(meta("M2", &["a@x.test"], later));
        let wait = s.dispatch_due(&|_| true).unwrap();
        assert!(wait > Duration::from_secs(3000), "{wait:?}");
        assert!(s.lock().jobs.is_empty());
        s.flush();
        s.dispatch_due(&|_| true);
        assert!(matches!(s.take(), Some(Job::Deliver(_))));
    }

    #[test]
    fn per_destination_limit_and_reuse() {
        let s = sched();
        for i in 0..4 {
            s.add(meta(&format!("P{i}"), &["a@x.test"], 0));
        }
        s.add(meta("Z", &["a@y.test"], 0));
        s.dispatch_due(&|_| true);
        let first = s.take().unwrap();
        let second = s.take().unwrap();
        // The limit (2) for x.test is reached: the y.test job comes next.
        let third = s.take().unwrap();
        for j in [&first, &second] {
            assert!(matches!(j, Job::Deliver(t) if t.hop == hop("x.test")));
        }
        assert!(matches!(&third, Job::Deliver(t) if t.hop == hop("y.test")));
        // A worker holding an x.test connection may take the rest without waiting.
        assert!(s.take_for(&hop("x.test")).is_some());
        assert!(s.take_for(&hop("x.test")).is_some());
        assert!(s.take_for(&hop("x.test")).is_none());
        s.release(&hop("x.test"));
        assert_eq!(s.lock().active.get(&hop("x.test")), Some(&1));
    }

    #[test]
    fn deleted_messages_are_dropped_and_nothing_pending_is_finished() {
        let s = sched();
        s.add(meta("GONE", &["a@x.test"], 0));
        let mut done = meta("DONE", &["a@x.test"], 0);
        done.recipients[0].status = crate::queue::Status::Failed;
        s.add(done);
        s.dispatch_due(&|id| id != "GONE");
        assert!(matches!(s.take(), Some(Job::Finish(e)) if e.id == "DONE"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn dead_hops_expire() {
        let s = Scheduler::new(Router::default(), 1, Duration::from_millis(50));
        let h = hop("x.test");
        let f = Failure::temporary("4.4.1", "refused");
        s.mark_dead(&h, &f);
        assert_eq!(s.dead(&h), Some(f));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(s.dead(&h), None);
        s.mark_dead(&h, &Failure::temporary("4.4.1", "x"));
        s.mark_alive(&h);
        assert_eq!(s.dead(&h), None);
    }

    #[test]
    fn shutdown_wakes_waiting_workers() {
        let s = Arc::new(sched());
        let w = {
            let s = s.clone();
            std::thread::spawn(move || s.take().is_none())
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.shutdown(Duration::from_secs(1)));
        assert!(w.join().unwrap());
    }
}
