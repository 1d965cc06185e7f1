//! Outbound delivery: the service that takes mail out of the queue and hands it to other
//! servers, retries what failed for a while, and returns what cannot be delivered.
//!
//! A scheduler thread decides what is due; a fixed set of worker threads
//! (`outbound.max_connections`) deliver, each over a blocking socket with timeouts, driving
//! the sans-IO [`ClientSession`](ironpost_core::smtp::client::ClientSession) (and rustls
//! after STARTTLS). No async runtime is involved. Next hops come from the static routes,
//! the relay host, or DNS (MX, then A/AAAA).
//!
//! Alias forwarding keeps the original envelope sender (no SRS), so a forwarded message may
//! fail the sender domain's SPF checks at the receiving end.

pub mod connection;
pub mod dns;
pub mod dsn;
mod report;
pub mod retry;
pub mod route;
pub mod sasl;
pub mod scheduler;
pub mod tls;
mod worker;

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::app::App;
use crate::queue::{Meta, Queue};

use self::dns::Resolver;
use self::retry::RetryPolicy;
use self::route::Router;
use self::sasl::SaslFile;
use self::scheduler::Scheduler;
use self::tls::TlsPolicy;

/// How often the scheduler looks for a flush request at least.
const TICK: Duration = Duration::from_secs(1);

/// Everything the workers share.
pub(crate) struct Context {
    pub(crate) app: Arc<App>,
    pub(crate) queue: Queue,
    pub(crate) scheduler: Scheduler,
    pub(crate) resolver: Resolver,
    pub(crate) sasl: SaslFile,
    pub(crate) tls: TlsPolicy,
    pub(crate) retry: RetryPolicy,
}

/// The running delivery service. Cheap to clone.
#[derive(Clone)]
pub struct Delivery {
    ctx: Arc<Context>,
    threads: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queued", &self.ctx.scheduler.len())
            .finish()
    }
}

impl Delivery {
    /// Starts the scheduler and the workers; `recovered` is what [`Queue::recover`] found.
    pub fn start(app: Arc<App>, queue: Queue, recovered: Vec<Meta>) -> io::Result<Delivery> {
        let c = &app.config;
        let router = Router::new(c.relay.routes.clone(), c.relay.relayhost.clone());
        // A next hop where every host failed is not tried again for the first retry
        // interval (at most five minutes): other messages to it wait their turn instead of
        // each waiting for connection timeouts.
        let dead_for = c
            .queue
            .retry_intervals
            .first()
            .copied()
            .unwrap_or(Duration::from_secs(60))
            .min(Duration::from_secs(300));
        let tls = TlsPolicy::new(c.outbound.tls, c.outbound.tls_verify)
            .map_err(|e| io::Error::other(format!("outbound TLS: {e}")))?;
        let resolver = Resolver::from_config(&c.dns);
        tracing::info!(
            dns = ?resolver.servers(),
            relayhost = %c.relay.relayhost.as_ref().map_or("-".into(), |h| h.to_string()),
            routes = c.relay.routes.len(),
            tls = c.outbound.tls.name(),
            tls_verify = c.outbound.tls_verify,
            queued = recovered.len(),
            "outbound delivery started"
        );
        let ctx = Arc::new(Context {
            scheduler: Scheduler::new(router, c.outbound.concurrency_per_destination, dead_for),
            resolver,
            sasl: SaslFile::new(&c.relay.sasl_password_file),
            tls,
            retry: RetryPolicy {
                intervals: c.queue.retry_intervals.clone(),
                max_age: c.queue.max_age,
            },
            queue,
            app,
        });
        for meta in recovered {
            ctx.scheduler.add(meta);
        }
        let mut threads = Vec::new();
        {
            let ctx = ctx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("ironpost-queue".into())
                    .spawn(move || schedule(&ctx))?,
            );
        }
        for i in 0..ctx.app.config.outbound.max_connections {
            let ctx = ctx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ironpost-smtp-out-{i}"))
                    .spawn(move || worker::run(ctx))?,
            );
        }
        Ok(Delivery {
            ctx,
            threads: Arc::new(std::sync::Mutex::new(threads)),
        })
    }

    /// The queue this service delivers from.
    pub fn queue(&self) -> &Queue {
        &self.ctx.queue
    }

    /// A message was just committed to the queue: deliver it.
    pub fn enqueued(&self, meta: Meta) {
        self.ctx.scheduler.add(meta);
    }

    /// Stops taking jobs and waits up to `grace` for deliveries in progress. One still
    /// running after that stays queued as it was (and may be sent twice: at-least-once).
    pub fn shutdown(&self, grace: Duration) {
        if !self.ctx.scheduler.shutdown(grace) {
            tracing::warn!("outbound deliveries still in progress at shutdown; they stay queued");
            return;
        }
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The scheduler thread: dispatches what is due, and picks up flush requests.
fn schedule(ctx: &Context) {
    let mut last_flush_check = std::time::Instant::now() - TICK;
    loop {
        if last_flush_check.elapsed() >= TICK {
            last_flush_check = std::time::Instant::now();
            if ctx.queue.take_flush_request() {
                tracing::info!("queue flush requested: every queued message is due now");
                ctx.scheduler.flush();
            }
        }
        let Some(wait) = ctx.scheduler.dispatch_due(&|id| ctx.queue.contains(id)) else {
            return;
        };
        ctx.scheduler.wait(wait.min(TICK));
        if ctx.scheduler.is_shut_down() {
            return;
        }
    }
}
