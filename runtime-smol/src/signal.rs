//! One-shot signals between a runtime's threads and tasks, built on a channel that never
//! carries a message: it is "fired" by closing it, which every receiver sees at once, and a
//! receiver that starts listening late still sees it.

use smol::channel::{self, Receiver, Sender};

/// A flag that, once fired, stays fired and wakes every task waiting for it.
#[derive(Clone)]
pub(crate) struct Signal {
    tx: Sender<()>,
    rx: Receiver<()>,
}

impl Signal {
    pub fn new() -> Signal {
        let (tx, rx) = channel::bounded(1);
        Signal { tx, rx }
    }

    /// Fires the signal. True if this call fired it, false if it already was.
    pub fn fire(&self) -> bool {
        self.tx.close()
    }

    pub fn is_fired(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes once the signal is fired.
    pub async fn fired(&self) {
        // Nothing is ever sent, so `recv` only returns when the channel is closed.
        let _ = self.rx.recv().await;
    }
}

/// A token held by every accept task and connection task; the receiver returned by
/// [`Alive::new`] sees the channel close when the last token is dropped.
#[derive(Clone)]
pub(crate) struct Alive {
    _token: Sender<()>,
}

impl Alive {
    pub fn new() -> (Alive, Receiver<()>) {
        let (tx, rx) = channel::bounded(1);
        (Alive { _token: tx }, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::future::{self, FutureExt as _};

    #[test]
    fn fired_once_seen_by_all() {
        let s = Signal::new();
        let other = s.clone();
        assert!(!other.is_fired());
        assert!(future::block_on(future::poll_once(other.fired())).is_none());
        assert!(s.fire());
        assert!(!s.fire());
        assert!(other.is_fired());
        future::block_on(other.fired());
        future::block_on(Signal::new().fired().or(s.fired()));
    }

    #[test]
    fn alive_closes_with_last_token() {
        let (a, rx) = Alive::new();
        let b = a.clone();
        drop(a);
        assert!(!rx.is_closed());
        drop(b);
        assert!(future::block_on(rx.recv()).is_err());
    }
}
