//! Delivery outcomes and the retry schedule: when a temporary failure is tried again, and
//! when a message has been queued too long and is returned to its sender.

use std::time::Duration;

use ironpost_core::smtp::Reply;

/// Why a recipient was not delivered on this attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 5xx: no point trying again; the sender gets a DSN now.
    pub permanent: bool,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: String,
    /// What went wrong: the server's reply in wire form (one line), or a local reason.
    pub diagnostic: String,
    /// The diagnostic is a reply from the remote server (Diagnostic-Code type `smtp`).
    pub from_server: bool,
}

impl Failure {
    pub fn temporary(status: &str, text: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            status: status.into(),
            diagnostic: text.into(),
            from_server: false,
        }
    }

    pub fn permanent(status: &str, text: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            status: status.into(),
            diagnostic: text.into(),
            from_server: false,
        }
    }

    /// A negative reply from the server: 5xx is permanent, anything else temporary.
    pub fn from_reply(reply: &Reply) -> Failure {
        Failure {
            permanent: reply.code >= 500,
            status: status_of(reply),
            diagnostic: reply_line(reply),
            from_server: true,
        }
    }
}

/// The enhanced status of a reply, or one made from its code's class (`4.0.0`).
pub fn status_of(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) if u16::from(e.0) == reply.code / 100 => e.to_string(),
        _ => format!("{}.0.0", reply.code / 100),
    }
}

/// A reply on one line, for logs, the queue file and DSNs.
pub fn reply_line(reply: &Reply) -> String {
    let mut s = reply.code.to_string();
    if let Some(e) = reply.enhanced {
        s.push(' ');
        s.push_str(&e.to_string());
    }
    let text = reply.text.replace('\n', " ");
    if !text.is_empty() {
        s.push(' ');
        s.push_str(&text);
    }
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// When to try again after a temporary failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first, second, ... failed attempt; the last one repeats.
    pub intervals: Vec<Duration>,
    /// How long after arrival a message is given up.
    pub max_age: Duration,
}

impl RetryPolicy {
    /// The time (ms since the epoch) of the next attempt after `failures` failed attempts
    /// (1 after the first), or `None` when the message has expired and must be returned.
    /// The last attempt is made at exactly the expiry time, never after it.
    pub fn next_attempt(&self, failures: u32, arrived_ms: u64, now_ms: u64) -> Option<u64> {
        let expires = arrived_ms.saturating_add(self.max_age.as_millis() as u64);
        if now_ms >= expires {
            return None;
        }
        let i = (failures.max(1) as usize - 1).min(self.intervals.len().saturating_sub(1));
        let wait = self
            .intervals
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300));
        Some(now_ms.saturating_add(wait.as_millis() as u64).min(expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(intervals: &[u64], max_age: u64) -> RetryPolicy {
        RetryPolicy {
            intervals: intervals.iter().map(|&s| Duration::from_secs(s)).collect(),
            max_age: Duration::from_secs(max_age),
        }
    }

    #[test]
    fn schedule_backs_off_then_repeats_the_last_interval() {
        let p = policy(&[60, 300, 900], 5 * 86400);
        let t0 = 1_000_000;
        assert_eq!(p.next_attempt(1, t0, t0), Some(t0 + 60_000));
        assert_eq!(p.next_attempt(2, t0, t0 + 60_000), Some(t0 + 360_000));
        assert_eq!(p.next_attempt(3, t0, t0 + 360_000), Some(t0 + 1_260_000));
        assert_eq!(p.next_attempt(4, t0, t0 + 1_260_000), Some(t0 + 2_160_000));
        assert_eq!(p.next_attempt(40, t0, t0 + 1_000), Some(t0 + 901_000));
        // 0 is treated as the first failure.
        assert_eq!(p.next_attempt(0, t0, t0), Some(t0 + 60_000));
    }

    #[test]
    fn last_attempt_is_at_expiry_then_expired() {
        let p = policy(&[60], 100);
        let t0 = 5_000;
        assert_eq!(p.next_attempt(1, t0, t0 + 50_000), Some(t0 + 100_000));
        assert_eq!(p.next_attempt(2, t0, t0 + 100_000), None);
        assert_eq!(p.next_attempt(2, t0, t0 + 200_000), None);
    }

    #[test]
    fn failures_from_replies() {
        let r = Reply::ext(550, 5, 1, 1, "No such user");
        let f = Failure::from_reply(&r);
        assert!(f.permanent && f.from_server);
        assert_eq!(f.status, "5.1.1");
        assert_eq!(f.diagnostic, "550 5.1.1 No such user");

        let r = Reply::new(451, None, "try\nlater");
        let f = Failure::from_reply(&r);
        assert!(!f.permanent);
        assert_eq!(f.status, "4.0.0");
        assert_eq!(f.diagnostic, "451 try later");

        // An enhanced code of the wrong class is not trusted.
        let r = Reply::ext(554, 2, 0, 0, "odd\r");
        assert_eq!(status_of(&r), "5.0.0");
        assert_eq!(reply_line(&r), "554 2.0.0 odd ");
    }
}
