//! The worker pool that runs handlers' blocking [`Job`]s, and the per-loop queues their
//! outputs come back through.

use std::collections::VecDeque;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use ironpost_core::service::{Job, JobOutput};
use mio::Waker;

/// Locks a mutex whether or not a panicking thread poisoned it: the data guarded here (a
/// queue) stays consistent across a panic because no code panics while holding the lock.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A finished job, addressed to a connection of one loop.
pub(crate) struct Completion {
    pub index: usize,
    pub generation: u64,
    /// `None` when the job panicked.
    pub output: Option<JobOutput>,
}

/// Where the workers put one loop's finished jobs; wakes that loop.
pub(crate) struct Completions {
    list: Mutex<CompletionList>,
    waker: Arc<Waker>,
}

#[derive(Default)]
struct CompletionList {
    done: Vec<Completion>,
    /// The loop has exited: outputs are dropped on arrival.
    closed: bool,
}

impl Completions {
    pub fn new(waker: Arc<Waker>) -> Completions {
        Completions {
            list: Mutex::new(CompletionList::default()),
            waker,
        }
    }

    fn push(&self, completion: Completion) {
        let mut list = lock(&self.list);
        if list.closed {
            drop(list);
            // Dropped here, on the worker: the output's own cleanup may do I/O.
            drop(completion);
            return;
        }
        let was_empty = list.done.is_empty();
        list.done.push(completion);
        drop(list);
        // A non-empty list means a wake is already on its way and not yet consumed.
        if was_empty {
            if let Err(e) = self.waker.wake() {
                tracing::warn!(error = %e, "cannot wake event loop");
            }
        }
    }

    /// Moves every finished job into `into` (which should be empty).
    pub fn take(&self, into: &mut Vec<Completion>) {
        std::mem::swap(&mut lock(&self.list).done, into);
    }

    /// Called by the loop as it exits: later outputs are dropped on arrival.
    pub fn close(&self) -> Vec<Completion> {
        let mut list = lock(&self.list);
        list.closed = true;
        std::mem::take(&mut list.done)
    }
}

struct Task {
    job: Job,
    done: Arc<Completions>,
    index: usize,
    generation: u64,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A cloneable handle that submits jobs to the pool.
#[derive(Clone)]
pub(crate) struct PoolHandle {
    shared: Arc<Shared>,
}

impl PoolHandle {
    /// Queues `job`; its output goes to `done` addressed to `(index, generation)`.
    pub fn submit(&self, job: Job, done: Arc<Completions>, index: usize, generation: u64) {
        let task = Task {
            job,
            done,
            index,
            generation,
        };
        let mut queue = lock(&self.shared.queue);
        queue.tasks.push_back(task);
        drop(queue);
        self.shared.ready.notify_one();
    }
}

/// The worker threads.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn start(workers: usize) -> io::Result<Pool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
        });
        let mut pool = Pool {
            shared,
            threads: Vec::new(),
        };
        for n in 0..workers.max(1) {
            let shared = pool.shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("ironpost-worker-{n}"))
                .spawn(move || work(&shared));
            match spawned {
                Ok(t) => pool.threads.push(t),
                Err(e) => {
                    pool.close_and_join();
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    pub fn handle(&self) -> PoolHandle {
        PoolHandle {
            shared: self.shared.clone(),
        }
    }

    /// Lets the workers finish the queued jobs, then joins them.
    pub fn close_and_join(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.ready.notify_all();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("worker thread panicked");
            }
        }
    }
}

fn work(shared: &Shared) {
    loop {
        let task = {
            let mut queue = lock(&shared.queue);
            loop {
                if let Some(task) = queue.tasks.pop_front() {
                    break task;
                }
                if queue.closed {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let Task {
            job,
            done,
            index,
            generation,
        } = task;
        let output = match panic::catch_unwind(AssertUnwindSafe(job)) {
            Ok(output) => Some(output),
            Err(_) => {
                tracing::error!("a connection's job panicked; the connection will be dropped");
                None
            }
        };
        done.push(Completion {
            index,
            generation,
            output,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    #[test]
    fn runs_jobs_and_wakes_the_loop() {
        let mut poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), Token(0)).unwrap());
        let done = Arc::new(Completions::new(waker));
        let mut pool = Pool::start(3).unwrap();
        let handle = pool.handle();
        for i in 0..10usize {
            handle.submit(Box::new(move || Box::new(i * 2)), done.clone(), i, 7);
        }
        handle.submit(Box::new(|| panic!("job panics")), done.clone(), 99, 0);
        let mut got = Vec::new();
        let mut events = Events::with_capacity(8);
        let mut batch = Vec::new();
        while got.len() < 11 {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .unwrap();
            assert!(!events.is_empty(), "no wake within 5s");
            done.take(&mut batch);
            got.append(&mut batch);
        }
        let mut values: Vec<_> = got
            .into_iter()
            .map(|c| c.output.map(|o| (c.index, *o.downcast::<usize>().unwrap())))
            .collect();
        values.sort();
        assert_eq!(values[0], None);
        assert_eq!(values[10], Some((9, 18)));
        pool.close_and_join();
        assert!(done.close().is_empty());
    }
}
