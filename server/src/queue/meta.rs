//! A queued message's envelope and per-recipient delivery state, kept beside the message as
//! a small TOML file that is replaced whole (temp file, fsync, rename) on every change.

use serde::{Deserialize, Serialize};

/// The format written; a file with a newer one is reported as unreadable, never guessed at.
pub const META_VERSION: u32 = 1;

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not delivered yet: tried again at `next_attempt_ms`.
    Pending,
    /// Accepted by the next hop (or delivered locally).
    Delivered,
    /// Permanently failed or expired; the sender is told once (`reported`).
    Failed,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Failed => "failed",
        }
    }
}

/// One recipient of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientState {
    /// The forward-path, without angle brackets.
    pub address: String,
    /// The address the client gave, when it was an alias that led here (for the DSN's
    /// Original-Recipient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
    pub status: Status,
    /// Failed attempts so far.
    #[serde(default)]
    pub attempts: u32,
    /// When to try next, in milliseconds since the epoch (0: now).
    #[serde(default)]
    pub next_attempt_ms: u64,
    /// The last reply or local error, on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// RFC 3463 status of the last attempt, e.g. `4.4.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_status: Option<String>,
    /// `last_reply` came from the remote server.
    #[serde(default)]
    pub from_server: bool,
    /// The server that gave `last_reply`: `host[ip]:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Failed and the sender was sent a DSN (or had none coming: the null sender).
    #[serde(default)]
    pub reported: bool,
}

impl RecipientState {
    pub fn new(address: String, original: Option<String>, now_ms: u64) -> Self {
        RecipientState {
            address,
            original,
            status: Status::Pending,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_reply: None,
            dsn_status: None,
            from_server: false,
            remote: None,
            reported: false,
        }
    }
}

/// A queued message's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub version: u32,
    /// The queue id: also the file names.
    pub id: String,
    /// The reverse-path; empty for the null sender (a DSN), which never gets a DSN back.
    pub from: String,
    /// When the message was accepted, in milliseconds since the epoch.
    pub arrived_ms: u64,
    /// Size of the queued file in octets.
    pub size: u64,
    /// The message has octets above 127 (sent with BODY=8BITMIME where offered).
    #[serde(default)]
    pub eight_bit: bool,
    /// The message needs SMTPUTF8.
    #[serde(default)]
    pub smtputf8: bool,
    pub recipients: Vec<RecipientState>,
}

/// Why a metadata file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("not valid queue metadata: {0}")]
    Syntax(String),
    #[error("queue metadata version {0} is newer than this ironpost understands")]
    Version(u32),
    #[error("queue metadata names id {found:?} but its file is {expected:?}")]
    WrongId { expected: String, found: String },
    #[error("queue metadata has no recipients")]
    NoRecipients,
    #[error("queue metadata holds an address with control characters or angle brackets")]
    BadAddress,
}

impl Meta {
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("queue metadata always serializes")
    }

    /// Parses and checks a metadata file's text; `id` is the id its file name gives.
    pub fn from_toml(text: &str, id: &str) -> Result<Meta, MetaError> {
        let meta: Meta = toml::from_str(text).map_err(|e| MetaError::Syntax(e.to_string()))?;
        if meta.version > META_VERSION {
            return Err(MetaError::Version(meta.version));
        }
        if meta.id != id {
            return Err(MetaError::WrongId {
                expected: id.to_string(),
                found: meta.id,
            });
        }
        if meta.recipients.is_empty() {
            return Err(MetaError::NoRecipients);
        }
        let bad = |a: &str| a.chars().any(|c| c.is_control() || c == '<' || c == '>');
        if bad(&meta.from)
            || meta
                .recipients
                .iter()
                .any(|r| r.address.is_empty() || bad(&r.address))
        {
            return Err(MetaError::BadAddress);
        }
        Ok(meta)
    }

    pub fn pending(&self) -> impl Iterator<Item = (usize, &RecipientState)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Status::Pending)
    }

    /// No recipient is pending: the message can leave the queue (once failures are
    /// reported).
    pub fn is_done(&self) -> bool {
        self.pending().next().is_none()
    }

    /// The earliest time a pending recipient is due, if any is pending.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.pending().map(|(_, r)| r.next_attempt_ms).min()
    }

    /// Failed recipients the sender has not been told about yet.
    pub fn unreported(&self) -> impl Iterator<Item = (usize, &RecipientState)> {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status == Status::Failed && !r.reported)
    }
}

/// A queue id as ironpost makes them: letters and digits only, so it is safe as a file
/// name (also checked for ids typed on the command line).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Meta {
        let mut r2 = RecipientState::new(
            "Bob@remote.test".into(),
            Some("team@example.test".into()),
            5,
        );
        r2.status = Status::Failed;
        r2.attempts = 3;
        r2.last_reply = Some("550 5.1.1 <Bob@remote.test>: \"no\" such user".into());
        r2.dsn_status = Some("5.1.1".into());
        r2.from_server = true;
        r2.remote = Some("mx.remote.test[127.0.0.1]:25".into());
        Meta {
            version: META_VERSION,
            id: "ABC123".into(),
            from: "alice@example.test".into(),
            arrived_ms: 1_700_000_000_123,
            size: 42,
            eight_bit: true,
            smtputf8: false,
            recipients: vec![RecipientState::new("carol@remote.test".into(), None, 7), r2],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        let text = m.to_toml();
        assert!(text.contains("status = \"failed\""), "{text}");
        assert_eq!(Meta::from_toml(&text, "ABC123").unwrap(), m);
        assert_eq!(m.next_due_ms(), Some(7));
        assert!(!m.is_done());
        assert_eq!(m.unreported().map(|(i, _)| i).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn null_sender_round_trips() {
        let mut m = sample();
        m.from = String::new();
        assert_eq!(Meta::from_toml(&m.to_toml(), "ABC123").unwrap().from, "");
    }

    #[test]
    fn bad_files_are_errors() {
        let m = sample();
        let text = m.to_toml();
        assert!(matches!(
            Meta::from_toml(&text, "OTHER"),
            Err(MetaError::WrongId { .. })
        ));
        assert!(matches!(
            Meta::from_toml(&text[..text.len() / 2], "ABC123"),
            Err(MetaError::Syntax(_))
        ));
        assert!(matches!(
            Meta::from_toml("", "ABC123"),
            Err(MetaError::Syntax(_))
        ));
        assert!(matches!(
            Meta::from_toml("\u{0}\u{1}garbage", "ABC123"),
            Err(MetaError::Syntax(_))
        ));
        let newer = text.replace("version = 1", "version = 99");
        assert!(matches!(
            Meta::from_toml(&newer, "ABC123"),
            Err(MetaError::Version(99))
        ));
        let mut none = m.clone();
        none.recipients.clear();
        assert!(matches!(
            Meta::from_toml(&none.to_toml(), "ABC123"),
            Err(MetaError::NoRecipients)
        ));
        let mut evil = m;
        evil.recipients[0].address = "x@y>\r\nRCPT TO:<z@w".into();
        assert!(matches!(
            Meta::from_toml(&evil.to_toml(), "ABC123"),
            Err(MetaError::BadAddress)
        ));
    }

    #[test]
    fn ids() {
        assert!(valid_id("1682CC9A6D001"));
        for bad in ["", "../x", "a.meta", "a b", "x/y"] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
