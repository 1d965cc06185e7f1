//! The accept task of one listener: a connection task per accepted socket, until shutdown.

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ironpost_core::service::HandlerFactory;
use smol::future::{self, FutureExt as _};
use smol::{Async, Executor, Timer};

use crate::connection;
use crate::signal::Alive;
use crate::Shared;

/// Accepts in a row before other tasks on this thread get a turn.
const BUDGET: usize = 64;
/// Pause after an accept failure that would repeat at once (out of descriptors or memory).
const BACKOFF: Duration = Duration::from_millis(50);

/// Accepts until shutdown, then closes the listener. Holds the executor weakly: the executor
/// owns this task, and a strong reference would keep both alive forever.
pub(crate) async fn accept_loop(
    listener: Async<TcpListener>,
    factory: Arc<dyn HandlerFactory>,
    shared: Arc<Shared>,
    executor: Weak<Executor<'static>>,
    alive: Alive,
) {
    let local = listener.get_ref().local_addr().ok();
    let mut accepted = 0usize;
    loop {
        // Shutdown first, so that a backlog of new connections cannot hold it off.
        let next = async {
            shared.shutdown.fired().await;
            None
        }
        .or(async { Some(listener.accept().await) })
        .await;
        let Some(result) = next else { break };
        match result {
            Ok((stream, peer)) => {
                let Some(executor) = executor.upgrade() else {
                    break;
                };
                let task =
                    connection::serve(stream, peer, factory.clone(), shared.clone(), alive.clone());
                executor.spawn(task).detach();
                accepted += 1;
                if accepted.is_multiple_of(BUDGET) {
                    future::yield_now().await;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => {
                tracing::warn!(listener = ?local, error = %e, "accept failed");
                Timer::after(BACKOFF).await;
            }
        }
    }
    tracing::debug!(listener = ?local, "listener closed");
}
