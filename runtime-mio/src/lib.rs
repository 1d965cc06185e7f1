//! mio event loops that drive ironpost's connection handlers over real TCP sockets.
//!
//! [`Runtime::start`] spawns `event_loops` threads, each with its own `mio::Poll`, and a
//! pool of `workers` threads for handlers' blocking jobs. Every loop registers a clone of
//! every listener and accepts until the listener would block, so whichever loop wakes
//! first takes the new connections; a connection then stays on the loop that accepted it.
//! The runtime moves bytes between sockets and [`ConnectionHandler`]s and knows nothing of
//! the protocol, TLS or storage behind them; it drops a connection whose pending output has
//! had no byte written for `RuntimeOptions::write_timeout`.
//!
//! [`ConnectionHandler`]: ironpost_core::service::ConnectionHandler

mod connection;
mod event_loop;
mod pool;
mod slab;
mod timer;

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use ironpost_core::service::HandlerFactory;
use mio::{Poll, Waker};

use crate::event_loop::{EventLoop, WAKER};
use crate::pool::{Completions, Pool};

/// A bound listening socket and the factory for the handlers of its connections.
pub struct Listener {
    pub listener: std::net::TcpListener,
    pub factory: Arc<dyn HandlerFactory>,
}

pub use ironpost_core::service::RuntimeOptions;

/// State shared by the loops and every [`ShutdownHandle`].
pub(crate) struct Shared {
    pub shutdown: AtomicBool,
    wakers: Vec<Arc<Waker>>,
}

impl Shared {
    fn shutdown(&self) {
        if self.shutdown.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::debug!("graceful shutdown requested");
        for waker in &self.wakers {
            if let Err(e) = waker.wake() {
                tracing::warn!(error = %e, "cannot wake event loop for shutdown");
            }
        }
    }
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
        self.shared.shutdown();
    }

    /// True once shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }
}

/// Running event loops and workers. Dropping it without [`Runtime::wait`] shuts down and waits.
pub struct Runtime {
    shared: Arc<Shared>,
    loops: Vec<JoinHandle<io::Result<()>>>,
    pool: Option<Pool>,
}

impl Runtime {
    /// Starts the loops and workers. The listeners are already bound (the server binds them
    /// so it can report ports and fail early); they are switched to non-blocking mode.
    pub fn start(listeners: Vec<Listener>, opts: RuntimeOptions) -> io::Result<Runtime> {
        let loop_count = match opts.event_loops {
            0 => thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        for l in &listeners {
            l.listener.set_nonblocking(true)?;
        }
        let mut polls = Vec::with_capacity(loop_count);
        let mut wakers = Vec::with_capacity(loop_count);
        let mut loop_listeners = Vec::with_capacity(loop_count);
        for _ in 0..loop_count {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
            let mut own = Vec::with_capacity(listeners.len());
            for l in &listeners {
                let clone = l.listener.try_clone()?;
                own.push((mio::net::TcpListener::from_std(clone), l.factory.clone()));
            }
            loop_listeners.push(own);
        }
        // The loops hold clones; the socket closes when the last loop lets go of it.
        drop(listeners);

        let shared = Arc::new(Shared {
            shutdown: AtomicBool::new(false),
            wakers,
        });
        let pool = Pool::start(opts.workers)?;
        let mut runtime = Runtime {
            shared: shared.clone(),
            loops: Vec::with_capacity(loop_count),
            pool: Some(pool),
        };
        let pool_handle = runtime
            .pool
            .as_ref()
            .map(Pool::handle)
            .expect("pool started");
        for (id, (poll, listeners)) in polls.into_iter().zip(loop_listeners).enumerate() {
            let event_loop = EventLoop {
                id,
                poll,
                listeners,
                completions: Arc::new(Completions::new(shared.wakers[id].clone())),
                pool: pool_handle.clone(),
                shared: shared.clone(),
                grace: opts.shutdown_grace,
                write_timeout: opts.write_timeout,
            };
            let loop_shared = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("ironpost-loop-{id}"))
                .spawn(move || {
                    let result = panic::catch_unwind(AssertUnwindSafe(|| event_loop.run()))
                        .unwrap_or_else(|_| Err(io::Error::other("event loop panicked")));
                    if let Err(e) = &result {
                        tracing::error!(event_loop = id, error = %e, "event loop failed");
                        // One loop failing takes the whole runtime down, gracefully.
                        loop_shared.shutdown();
                    }
                    result
                });
            match spawned {
                Ok(t) => runtime.loops.push(t),
                Err(e) => {
                    // Dropping the runtime stops the loops already started.
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

    /// Blocks until shutdown (begun through a [`ShutdownHandle`], or by a failing loop) is
    /// complete: listeners closed, every handler told, connections closed or dropped at the
    /// end of the grace period, loops exited and workers joined.
    pub fn wait(mut self) -> io::Result<()> {
        self.join()
    }

    fn join(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.loops.drain(..) {
            let outcome = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("event loop thread panicked")));
            if let Err(e) = outcome {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        if let Some(mut pool) = self.pool.take() {
            pool.close_and_join();
        }
        result
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if self.loops.is_empty() && self.pool.is_none() {
            return;
        }
        self.shared.shutdown();
        if let Err(e) = self.join() {
            tracing::warn!(error = %e, "runtime stopped with an error");
        }
    }
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
        let opts = RuntimeOptions::default();
        assert_eq!(opts.event_loops, 0, "0 means one loop per core");
        assert_eq!(opts.workers, 32);
        assert_eq!(opts.shutdown_grace, std::time::Duration::from_secs(30));
        assert_eq!(opts.write_timeout, std::time::Duration::from_secs(300));
    }
}
