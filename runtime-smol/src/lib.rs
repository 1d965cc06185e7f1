//! A smol executor that drives ironpost's connection handlers over real TCP sockets, one
//! task per connection.
//!
//! [`Runtime::start`] runs `event_loops` threads on one shared [`smol::Executor`]. Every
//! listener gets an accept task; every accepted socket gets a task that moves bytes between
//! the socket and its [`ConnectionHandler`], runs the handler's blocking jobs on smol's
//! blocking pool (at most `workers` at once), keeps its timer, and drops it once its pending
//! output has had no byte written for `write_timeout`. The runtime knows nothing of the
//! protocol, TLS or storage behind the handlers.
//!
//! The public API has the shape of `ironpost-runtime-mio`'s, so the server chooses between
//! the two with one `match`.
//!
//! [`ConnectionHandler`]: ironpost_core::service::ConnectionHandler

mod accept;
mod connection;
mod signal;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ironpost_core::service::HandlerFactory;
pub use ironpost_core::service::RuntimeOptions;
use smol::channel::Receiver;
use smol::future::FutureExt as _;
use smol::lock::Semaphore;
use smol::{Async, Executor, Timer};

use crate::signal::{Alive, Signal};

/// A bound listening socket and the factory for the handlers of its connections.
pub struct Listener {
    pub listener: std::net::TcpListener,
    pub factory: Arc<dyn HandlerFactory>,
}

/// What every task of a runtime shares.
pub(crate) struct Shared {
    /// Fired when graceful shutdown begins: stop accepting, tell every handler.
    pub shutdown: Signal,
    /// Fired when the grace period is over: connections still open are dropped.
    pub abort: Signal,
    /// One permit per job that may run at once on the blocking pool.
    pub jobs: Arc<Semaphore>,
    /// How long pending output may go without a byte written before the peer is dropped.
    pub write_timeout: Duration,
}

/// Begins graceful shutdown of a [`Runtime`] from any thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    shared: Arc<Shared>,
}

impl ShutdownHandle {
    /// Stops accepting, tells every handler to finish, and lets [`Runtime::wait`] return once
    /// all connections are closed or the grace period is over. Calling it again does nothing.
    pub fn shutdown(&self) {
        if self.shared.shutdown.fire() {
            tracing::debug!("graceful shutdown requested");
        }
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.is_fired()
    }
}

/// Running executor threads. Dropping it without [`Runtime::wait`] shuts down and waits.
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// Dropped once the threads are joined, with whatever tasks it still holds.
    executor: Option<Arc<Executor<'static>>>,
}

impl Runtime {
    /// Starts the executor threads and an accept task per listener. The listeners are
    /// already bound (the server binds them so it can report ports and fail early); they are
    /// switched to non-blocking mode.
    pub fn start(listeners: Vec<Listener>, opts: RuntimeOptions) -> io::Result<Runtime> {
        let thread_count = match opts.event_loops {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut sockets = Vec::with_capacity(listeners.len());
        for l in listeners {
            sockets.push((Async::new(l.listener)?, l.factory));
        }

        let shared = Arc::new(Shared {
            shutdown: Signal::new(),
            abort: Signal::new(),
            jobs: Arc::new(Semaphore::new(opts.workers.max(1))),
            write_timeout: opts.write_timeout,
        });
        let executor = Arc::new(Executor::new());
        let (alive, all_closed) = Alive::new();
        for (listener, factory) in sockets {
            let task = accept::accept_loop(
                listener,
                factory,
                shared.clone(),
                Arc::downgrade(&executor),
                alive.clone(),
            );
            executor.spawn(task).detach();
        }
        // From here on only the accept tasks and connections hold `Alive` tokens.
        drop(alive);
        let stop = Signal::new();
        executor
            .spawn(supervise(
                shared.clone(),
                all_closed,
                opts.shutdown_grace,
                stop.clone(),
            ))
            .detach();

        let mut runtime = Runtime {
            shared: shared.clone(),
            threads: Vec::with_capacity(thread_count),
            executor: Some(executor.clone()),
        };
        for id in 0..thread_count {
            let executor = executor.clone();
            let stop = stop.clone();
            let thread_shared = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("ironpost-smol-{id}"))
                .spawn(move || {
                    let run = || smol::block_on(executor.run(stop.fired()));
                    let result = panic::catch_unwind(AssertUnwindSafe(run))
                        .map_err(|_| io::Error::other("executor thread panicked"));
                    if let Err(e) = &result {
                        tracing::error!(thread = id, error = %e, "executor thread failed");
                        // One thread failing takes the whole runtime down, gracefully.
                        thread_shared.shutdown.fire();
                    }
                    result
                });
            match spawned {
                Ok(t) => runtime.threads.push(t),
                Err(e) => {
                    // Dropping the runtime stops the threads already started.
                    drop(runtime);
                    return Err(e);
                }
            }
        }
        Ok(runtime)
    }

    /// A handle whose `shutdown()` begins graceful shutdown.
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            shared: self.shared.clone(),
        }
    }

    /// Blocks until shutdown (begun through a [`ShutdownHandle`], or by a failing thread) is
    /// complete: listeners closed, every handler told, connections closed or dropped at the
    /// end of the grace period, and the executor threads exited.
    pub fn wait(mut self) -> io::Result<()> {
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads.drain(..) {
            let outcome = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("executor thread panicked")));
            if let Err(e) = outcome {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        // Normally empty by now; a task left behind (after a thread failed) is dropped here.
        self.executor = None;
        result
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.threads.is_empty() && self.executor.is_none() {
            return;
        }
        self.shared.shutdown.fire();
        if let Err(e) = self.join() {
            tracing::warn!(error = %e, "runtime stopped with an error");
        }
    }
}

/// Waits for shutdown, then for every connection to close or the grace period to end, then
/// stops the executor threads.
async fn supervise(shared: Arc<Shared>, all_closed: Receiver<()>, grace: Duration, stop: Signal) {
    shared.shutdown.fired().await;
    let closed_in_time = async {
        let _ = all_closed.recv().await;
        true
    }
    .or(async {
        Timer::after(grace).await;
        false
    })
    .await;
    if !closed_in_time {
        tracing::warn!(
            connections = all_closed.sender_count(),
            "shutdown grace over; dropping connections"
        );
        shared.abort.fire();
        let _ = all_closed.recv().await;
    }
    tracing::debug!("all connections closed");
    stop.fire();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<ShutdownHandle>();
        send::<Runtime>();
        send::<Listener>();
    }

    #[test]
    fn starts_and_stops_without_listeners() {
        let runtime = Runtime::start(
            Vec::new(),
            RuntimeOptions {
                event_loops: 0,
                workers: 1,
                shutdown_grace: Duration::from_secs(1),
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        assert!(!runtime.threads.is_empty());
        let handle = runtime.handle();
        assert!(!handle.is_shutting_down());
        handle.shutdown();
        handle.shutdown();
        assert!(handle.is_shutting_down());
        runtime.wait().unwrap();
    }
}
