//! Group commit: one thread publishes finished messages into `new/` in batches.
//!
//! A 250 reply promises the message is durable, and the last step of a Maildir delivery
//! (rename into `new/`, then fsync of `new/`) costs one directory fsync per message if every
//! session does it alone. Instead each session fsyncs its own file (the journal coalesces
//! those), then hands its renames to the single [`Committer`] thread and waits. The committer
//! takes everything queued so far as one batch, renames all of it, fsyncs each distinct
//! target directory once, and wakes every waiter. While it is busy syncing, the next batch
//! piles up, so the busier the server, the more messages share each directory fsync.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};

/// One message's request: its (tmp path, new path) renames and where to send the outcome.
struct Job {
    renames: Vec<(PathBuf, PathBuf)>,
    done: SyncSender<io::Result<()>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Set by [`Committer`]'s drop: finish what is queued, then exit.
    shutdown: bool,
    /// Set when the thread has exited (normally or by panic): refuse new jobs rather than
    /// leave their waiters blocked forever.
    dead: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    batches: AtomicU64,
    messages: AtomicU64,
}

impl Shared {
    /// The queue stays consistent even if a holder panicked (every update is a single push or
    /// swap), so a poisoned lock is still usable.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Counters for tests and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    /// Batches processed (each costs one fsync per distinct directory).
    pub batches: u64,
    /// Messages (calls to [`Committer::commit`]) processed.
    pub messages: u64,
}

/// Handle to the committer thread. Dropping it lets the thread finish the queued batch and
/// joins it.
pub struct Committer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the committer thread; panics if the OS refuses a thread (see [`Self::try_start`]).
    pub fn start() -> Committer {
        Self::try_start().expect("spawning the committer thread")
    }

    /// Starts the committer thread.
    pub fn try_start() -> io::Result<Committer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            batches: AtomicU64::new(0),
            messages: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("ironpost-commit".into())
            .spawn(move || run(&worker))?;
        Ok(Committer {
            shared,
            thread: Some(thread),
        })
    }

    /// Renames every `(tmp, new)` pair and returns once the renames are durable (the new
    /// directories fsynced). The caller must already have fsynced the files themselves.
    ///
    /// All or nothing per call: on error, any file of this call already renamed into `new/`
    /// is removed, and so are the remaining tmp files, so a failed message leaves no trace.
    pub fn commit(&self, renames: Vec<(PathBuf, PathBuf)>) -> io::Result<()> {
        if renames.is_empty() {
            return Ok(());
        }
        let (done, outcome) = mpsc::sync_channel(1);
        {
            let mut queue = self.shared.lock();
            if queue.dead || queue.shutdown {
                return Err(stopped());
            }
            queue.jobs.push(Job { renames, done });
        }
        self.shared.wake.notify_one();
        // The sender is dropped without a message only if the thread died mid-batch.
        outcome.recv().unwrap_or_else(|_| Err(stopped()))
    }

    /// Batches and messages processed so far.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            batches: self.shared.batches.load(Ordering::Relaxed),
            messages: self.shared.messages.load(Ordering::Relaxed),
        }
    }

    /// Batches processed so far.
    pub fn batches(&self) -> u64 {
        self.stats().batches
    }

    /// Messages processed so far.
    pub fn messages(&self) -> u64 {
        self.stats().messages
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("stats", &self.stats())
            .finish()
    }
}

fn stopped() -> io::Error {
    io::Error::other("the commit thread has stopped")
}

/// Marks the queue dead when the thread exits, even by panic, and drops every queued job so
/// its waiter gets an error instead of blocking forever.
struct DeadOnExit<'a>(&'a Shared);

impl Drop for DeadOnExit<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.dead = true;
        queue.jobs.clear();
    }
}

fn run(shared: &Shared) {
    let _guard = DeadOnExit(shared);
    loop {
        let batch = {
            let mut queue = shared.lock();
            while queue.jobs.is_empty() && !queue.shutdown {
                queue = shared.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
            }
            if queue.jobs.is_empty() {
                return; // shut down with nothing left to do
            }
            std::mem::take(&mut queue.jobs)
        };
        let count = batch.len() as u64;
        let outcomes = process(&batch);
        shared.batches.fetch_add(1, Ordering::Relaxed);
        shared.messages.fetch_add(count, Ordering::Relaxed);
        for (job, outcome) in batch.into_iter().zip(outcomes) {
            // A waiter that went away (it cannot, it blocks) needs no answer.
            let _ = job.done.send(outcome);
        }
    }
}

/// Performs one batch: all renames, then one fsync per distinct target directory.
/// Returns one outcome per job, in order.
fn process(batch: &[Job]) -> Vec<io::Result<()>> {
    let mut outcomes: Vec<io::Result<()>> = batch.iter().map(rename_all).collect();

    let mut dirs: Vec<&Path> = Vec::new();
    let mut seen = HashSet::new();
    for (job, outcome) in batch.iter().zip(&outcomes) {
        if outcome.is_ok() {
            for (_, new) in &job.renames {
                let dir = new.parent().unwrap_or(Path::new("."));
                if seen.insert(dir) {
                    dirs.push(dir);
                }
            }
        }
    }

    for dir in dirs {
        if let Err(e) = sync_dir(dir) {
            // Every message with a file in this directory is not durable: report it and take
            // it back out of new/, so the client's retry cannot produce a duplicate.
            for (job, outcome) in batch.iter().zip(outcomes.iter_mut()) {
                if outcome.is_ok() && job.renames.iter().any(|(_, new)| new.parent() == Some(dir)) {
                    for (_, new) in &job.renames {
                        remove_quietly(new);
                    }
                    *outcome = Err(io::Error::new(
                        e.kind(),
                        format!("fsync of directory {}: {e}", dir.display()),
                    ));
                }
            }
        }
    }
    outcomes
}

/// Renames one job's files; on the first failure undoes the job (removes what was renamed
/// and what was still in tmp/).
fn rename_all(job: &Job) -> io::Result<()> {
    for (i, (tmp, new)) in job.renames.iter().enumerate() {
        if let Err(e) = fs::rename(tmp, new) {
            for (_, done) in &job.renames[..i] {
                remove_quietly(done);
            }
            for (pending, _) in &job.renames[i..] {
                remove_quietly(pending);
            }
            return Err(io::Error::new(
                e.kind(),
                format!("rename {} -> {}: {e}", tmp.display(), new.display()),
            ));
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove file of a failed commit");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maildir::test_support::TempDir;
    use std::sync::Barrier;

    fn setup(dir: &Path) -> (PathBuf, PathBuf) {
        let tmp = dir.join("tmp");
        let new = dir.join("new");
        fs::create_dir_all(&tmp).unwrap();
        fs::create_dir_all(&new).unwrap();
        (tmp, new)
    }

    #[test]
    fn renames_and_counts() {
        let td = TempDir::new();
        let (tmp, new) = setup(td.path());
        fs::write(tmp.join("a"), b"a").unwrap();
        fs::write(tmp.join("b"), b"b").unwrap();
        let c = Committer::start();
        c.commit(vec![
            (tmp.join("a"), new.join("a")),
            (tmp.join("b"), new.join("b")),
        ])
        .unwrap();
        assert_eq!(fs::read(new.join("a")).unwrap(), b"a");
        assert_eq!(fs::read(new.join("b")).unwrap(), b"b");
        assert!(!tmp.join("a").exists());
        assert_eq!(
            c.stats(),
            CommitStats {
                batches: 1,
                messages: 1
            }
        );
        c.commit(Vec::new()).unwrap();
        assert_eq!(c.messages(), 1);
    }

    #[test]
    fn failing_message_is_undone_and_others_land() {
        let td = TempDir::new();
        let (tmp, new) = setup(td.path());
        for name in ["ok", "first", "second"] {
            fs::write(tmp.join(name), name).unwrap();
        }
        let c = Arc::new(Committer::start());
        let barrier = Arc::new(Barrier::new(2));
        let good = {
            let (c, barrier, tmp, new) = (c.clone(), barrier.clone(), tmp.clone(), new.clone());
            thread::spawn(move || {
                barrier.wait();
                c.commit(vec![(tmp.join("ok"), new.join("ok"))])
            })
        };
        barrier.wait();
        // The second rename's source is missing: the first must be taken back out of new/.
        let err = c
            .commit(vec![
                (tmp.join("first"), new.join("first")),
                (tmp.join("missing"), new.join("missing")),
                (tmp.join("second"), new.join("second")),
            ])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing"), "{err}");
        good.join().unwrap().unwrap();
        assert!(new.join("ok").exists());
        assert!(!new.join("first").exists());
        assert!(!tmp.join("first").exists());
        assert!(!tmp.join("second").exists());
        assert!(!new.join("second").exists());
    }

    #[test]
    fn concurrent_commits_share_batches() {
        const N: usize = 64;
        let td = TempDir::new();
        let (tmp, new) = setup(td.path());
        let c = Arc::new(Committer::start());
        let barrier = Arc::new(Barrier::new(N));
        let threads: Vec<_> = (0..N)
            .map(|i| {
                let (c, barrier) = (c.clone(), barrier.clone());
                let (from, to) = (tmp.join(i.to_string()), new.join(i.to_string()));
                fs::write(&from, i.to_string()).unwrap();
                thread::spawn(move || {
                    barrier.wait();
                    c.commit(vec![(from, to)])
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(fs::read_dir(&new).unwrap().count(), N);
        let stats = c.stats();
        assert_eq!(stats.messages, N as u64);
        assert!(stats.batches < N as u64, "{stats:?}");
    }

    #[test]
    fn drop_joins_the_thread() {
        let c = Committer::start();
        drop(c);
    }
}
