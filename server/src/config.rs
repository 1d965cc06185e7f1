//! The configuration: one TOML file, documented by the embedded default
//! (`default-config.toml`).
//!
//! Every key is optional and a missing key takes the embedded default's value, so an empty
//! file is the default configuration. Unknown keys are rejected: a misspelt key that were
//! silently ignored would leave a server running with a setting its operator thinks is off.
//! Every error names the file, the key and the line.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

pub use crate::outbound::route::NextHop;

/// The embedded default configuration, also the reference documentation of the format.
pub const DEFAULT_CONFIG: &str = include_str!("default-config.toml");

/// Longest command line a server may be configured with; RFC 5321 requires at least 512.
const MIN_LINE_LENGTH: usize = 512;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The TOML is malformed, holds an unknown key, or a value of the wrong type.
    #[error("{origin}:{line}:{column}: {}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Parse {
        origin: String,
        line: usize,
        column: usize,
        /// The dotted key the error is about, when it can be told.
        key: Option<String>,
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{origin}:{line}: {key}: {message}")]
    Invalid {
        origin: String,
        /// The dotted key, e.g. `limits.max_line_length`.
        key: String,
        line: usize,
        message: String,
    },
}

/// The whole server configuration, with defaults applied and paths made absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub hostname: String,
    pub data_dir: PathBuf,
    /// Lowercased, non-empty, without duplicates.
    pub domains: Vec<String>,
    pub accounts_file: PathBuf,
    pub aliases_file: PathBuf,
    /// Bytes.
    pub max_message_size: u64,
    pub tls: TlsFiles,
    pub limits: Limits,
    /// Port 25.
    pub smtp: SmtpListener,
    /// Port 587.
    pub submission: Listener,
    /// Port 465, implicit TLS.
    pub submissions: Listener,
    /// Port 143: IMAP with STARTTLS (no login before TLS).
    pub imap: Listener,
    /// Port 993: IMAP over implicit TLS.
    pub imaps: Listener,
    /// Port 110: POP3 with STLS (no USER/PASS/AUTH before TLS); off by default.
    pub pop3: Listener,
    /// Port 995: POP3 over implicit TLS; off by default.
    pub pop3s: Listener,
    /// Blocking worker threads.
    pub workers: usize,
    /// Event loops; 0 means one per core (see [`Config::event_loop_count`]).
    pub event_loops: usize,
    /// Which runtime drives the connections.
    pub runtime: RuntimeKind,
    /// Where mail for other domains goes.
    pub relay: Relay,
    /// The resolvers asked for MX, A and AAAA records.
    pub dns: Dns,
    /// How long and how often queued mail is retried.
    pub queue: QueueSettings,
    /// How the SMTP client behaves towards other servers.
    pub outbound: Outbound,
}

/// `[relay]`: routing of outbound mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Domain (lowercased) to next hop, consulted first.
    pub routes: Vec<(String, NextHop)>,
    /// All other mail goes through this host when set (a smart host).
    pub relayhost: Option<NextHop>,
    /// Credentials for next hops, in docker-mailserver's `postfix-sasl-password.cf` format.
    pub sasl_password_file: PathBuf,
}

/// `[dns]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    /// Resolvers to ask, in order; empty means the `nameserver` lines of /etc/resolv.conf.
    pub servers: Vec<SocketAddr>,
    /// How long to wait for one answer from one server.
    pub timeout: Duration,
}

/// `[queue]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// A message still undelivered this long after it arrived is returned to its sender.
    pub max_age: Duration,
    /// The wait after the first, second, ... failed attempt; the last repeats.
    pub retry_intervals: Vec<Duration>,
}

/// `outbound.tls`: when STARTTLS is used towards other servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutboundTls {
    /// Whenever the server offers it; cleartext otherwise (opportunistic, RFC 7435).
    #[default]
    May,
    /// Always: a server that does not offer it gets no mail (it stays queued).
    Encrypt,
    /// Never.
    None,
}

impl OutboundTls {
    pub fn name(self) -> &'static str {
        match self {
            OutboundTls::May => "may",
            OutboundTls::Encrypt => "encrypt",
            OutboundTls::None => "none",
        }
    }
}

/// `[outbound]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    pub tls: OutboundTls,
    /// Check the server's certificate against the web PKI roots. With `tls = "encrypt"` a
    /// certificate that fails defers the mail; with `"may"` the result is only logged.
    pub tls_verify: bool,
    /// Simultaneous connections to one next hop.
    pub concurrency_per_destination: usize,
    /// Simultaneous outbound connections in all (the number of delivery threads).
    pub max_connections: usize,
    /// The name given in EHLO.
    pub helo_name: String,
    pub connect_timeout: Duration,
}

/// The runtime that moves bytes between sockets and connections (`runtime = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RuntimeKind {
    /// Event loops on mio, one per core, and a worker pool.
    #[default]
    Mio,
    /// A task per connection on a smol executor, jobs on smol's blocking pool.
    Smol,
}

impl RuntimeKind {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Mio => "mio",
            RuntimeKind::Smol => "smol",
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mio" => Ok(RuntimeKind::Mio),
            "smol" => Ok(RuntimeKind::Smol),
            other => Err(format!(
                "{other:?} is not a runtime: must be \"mio\" or \"smol\""
            )),
        }
    }
}

/// Certificate and key files; both or neither (then a self-signed pair is generated).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Per-connection and global resource limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// How long output may wait for a client that reads none of it before the connection
    /// is dropped (the runtimes' `RuntimeOptions::write_timeout`).
    pub write_timeout: Duration,
    pub max_errors: u32,
    pub max_auth_failures: u32,
    /// `Received:` fields a message may carry; one with more is refused as a mail loop.
    pub max_hops: usize,
}

/// A listener for submission ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub enabled: bool,
    pub listen: Vec<SocketAddr>,
}

/// The port-25 listener, which may additionally offer STARTTLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpListener {
    pub enabled: bool,
    pub listen: Vec<SocketAddr>,
    /// Offer STARTTLS on port 25.
    pub starttls: bool,
}

// ---- the file as written: everything optional, spans kept for values we validate ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    hostname: Option<Spanned<String>>,
    data_dir: Option<Spanned<PathBuf>>,
    domains: Option<Spanned<Vec<Spanned<String>>>>,
    accounts_file: Option<Spanned<PathBuf>>,
    aliases_file: Option<Spanned<PathBuf>>,
    max_message_size: Option<Spanned<u64>>,
    workers: Option<Spanned<usize>>,
    event_loops: Option<usize>,
    runtime: Option<Spanned<String>>,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    smtp: RawSmtp,
    #[serde(default)]
    submission: RawListener,
    #[serde(default)]
    submissions: RawListener,
    #[serde(default)]
    imap: RawListener,
    #[serde(default)]
    imaps: RawListener,
    #[serde(default)]
    pop3: RawListener,
    #[serde(default)]
    pop3s: RawListener,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    dns: RawDns,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    outbound: RawOutbound,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    routes: Option<Spanned<std::collections::BTreeMap<String, Spanned<String>>>>,
    relayhost: Option<Spanned<String>>,
    sasl_password_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDns {
    servers: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<u64>>,
}

/// A duration as a number of seconds or a text such as `"5d"` or `"1h30m"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    max_age: Option<Spanned<RawDuration>>,
    retry_intervals: Option<Spanned<Vec<u64>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOutbound {
    tls: Option<Spanned<String>>,
    tls_verify: Option<bool>,
    concurrency_per_destination: Option<Spanned<usize>>,
    max_connections: Option<Spanned<usize>>,
    helo_name: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_connections: Option<Spanned<usize>>,
    max_connections_per_ip: Option<Spanned<usize>>,
    max_recipients: Option<Spanned<usize>>,
    max_line_length: Option<Spanned<usize>>,
    command_timeout: Option<Spanned<u64>>,
    data_timeout: Option<Spanned<u64>>,
    write_timeout: Option<Spanned<u64>>,
    max_errors: Option<Spanned<u32>>,
    max_auth_failures: Option<Spanned<u32>>,
    max_hops: Option<Spanned<usize>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListener {
    enabled: Option<bool>,
    listen: Option<Spanned<Vec<SocketAddr>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    enabled: Option<bool>,
    listen: Option<Spanned<Vec<SocketAddr>>>,
    starttls: Option<bool>,
}

// Defaults for absent keys; kept equal to default-config.toml (a test checks).
const DEFAULT_HOSTNAME: &str = "localhost";
const DEFAULT_DATA_DIR: &str = "ironpost-data";
const DEFAULT_DOMAIN: &str = "example.test";
const DEFAULT_MAX_MESSAGE_SIZE: u64 = 10_240_000;
const DEFAULT_WORKERS: usize = 32;
const DEFAULT_SMTP_LISTEN: &str = "127.0.0.1:10025";
const DEFAULT_SUBMISSION_LISTEN: &str = "127.0.0.1:10587";
const DEFAULT_SUBMISSIONS_LISTEN: &str = "127.0.0.1:10465";
const DEFAULT_IMAP_LISTEN: &str = "127.0.0.1:10143";
const DEFAULT_IMAPS_LISTEN: &str = "127.0.0.1:10993";
const DEFAULT_POP3_LISTEN: &str = "127.0.0.1:10110";
const DEFAULT_POP3S_LISTEN: &str = "127.0.0.1:10995";
const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(5);
/// Five days, Postfix's `maximal_queue_lifetime`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 24 * 3600);
const DEFAULT_RETRY_INTERVALS: [u64; 5] = [60, 300, 900, 1800, 3600];
const DEFAULT_CONCURRENCY_PER_DESTINATION: usize = 4;
const DEFAULT_OUTBOUND_CONNECTIONS: usize = 20;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_recipients: 100,
            max_line_length: 2048,
            command_timeout: Duration::from_secs(300),
            data_timeout: Duration::from_secs(180),
            write_timeout: Duration::from_secs(300),
            max_errors: 10,
            max_auth_failures: 3,
            max_hops: 50,
        }
    }
}

impl Config {
    /// Reads and validates the configuration file at `path`; relative paths inside it resolve
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let io_err = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(io_err)?;
        let abs = std::path::absolute(path).map_err(io_err)?;
        let base = abs.parent().unwrap_or(Path::new("/"));
        Config::from_toml(&text, base, &path.display().to_string())
    }

    /// Parses and validates configuration text. `base_dir` anchors relative paths; `origin`
    /// names the source in error messages.
    pub fn from_toml(text: &str, base_dir: &Path, origin: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| parse_error(text, origin, &e))?;
        let base_dir = std::path::absolute(base_dir).unwrap_or_else(|_| base_dir.to_path_buf());
        Validator { text, origin }.build(raw, &base_dir)
    }

    /// The embedded default, with relative paths anchored at `base_dir` (the caller passes
    /// the current directory).
    pub fn embedded_default(base_dir: &Path) -> Config {
        Config::from_toml(DEFAULT_CONFIG, base_dir, "<embedded default>")
            .expect("the embedded default configuration is valid")
    }

    /// The number of event loops to run: `event_loops`, or one per core when it is 0.
    pub fn event_loop_count(&self) -> usize {
        if self.event_loops > 0 {
            self.event_loops
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

struct Validator<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Validator<'_> {
    fn invalid(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin.to_string(),
            key: key.to_string(),
            line: line_col(self.text, span.start).0,
            message: message.into(),
        }
    }

    /// A positive integer, or the default when absent.
    fn positive<T>(&self, key: &str, v: Option<Spanned<T>>, default: T) -> Result<T, ConfigError>
    where
        T: Copy + PartialEq + Default,
    {
        match v {
            None => Ok(default),
            Some(s) if *s.get_ref() == T::default() => {
                Err(self.invalid(key, s.span(), "must be greater than 0"))
            }
            Some(s) => Ok(s.into_inner()),
        }
    }

    fn path(
        &self,
        key: &str,
        v: Option<Spanned<PathBuf>>,
        base: &Path,
    ) -> Result<Option<PathBuf>, ConfigError> {
        match v {
            None => Ok(None),
            Some(s) if s.get_ref().as_os_str().is_empty() => {
                Err(self.invalid(key, s.span(), "must not be empty"))
            }
            Some(s) => Ok(Some(base.join(s.into_inner()))),
        }
    }

    fn listen(
        &self,
        key: &str,
        enabled: bool,
        v: Option<Spanned<Vec<SocketAddr>>>,
        default: &str,
    ) -> Result<Vec<SocketAddr>, ConfigError> {
        match v {
            None => Ok(vec![default.parse().expect("default address is valid")]),
            Some(s) if enabled && s.get_ref().is_empty() => Err(self.invalid(
                key,
                s.span(),
                "an enabled listener needs at least one address",
            )),
            Some(s) => Ok(s.into_inner()),
        }
    }

    fn build(&self, raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
        let hostname = match raw.hostname {
            None => DEFAULT_HOSTNAME.to_string(),
            Some(s) => {
                let span = s.span();
                let name = s.into_inner().to_ascii_lowercase();
                if let Err(why) = check_dns_name(&name) {
                    return Err(self.invalid("hostname", span, why));
                }
                name
            }
        };

        let domains = match raw.domains {
            None => vec![DEFAULT_DOMAIN.to_string()],
            Some(list) => {
                let span = list.span();
                let mut out: Vec<String> = Vec::new();
                for (i, d) in list.into_inner().into_iter().enumerate() {
                    let span = d.span();
                    let name = d.into_inner().to_ascii_lowercase();
                    if let Err(why) = check_dns_name(&name) {
                        return Err(self.invalid(&format!("domains[{i}]"), span, why));
                    }
                    if !out.contains(&name) {
                        out.push(name);
                    }
                }
                if out.is_empty() {
                    return Err(self.invalid("domains", span, "at least one domain is needed"));
                }
                out
            }
        };

        let data_dir = self
            .path("data_dir", raw.data_dir, base)?
            .unwrap_or_else(|| base.join(DEFAULT_DATA_DIR));
        let accounts_file = self
            .path("accounts_file", raw.accounts_file, base)?
            .unwrap_or_else(|| data_dir.join("postfix-accounts.cf"));
        let aliases_file = self
            .path("aliases_file", raw.aliases_file, base)?
            .unwrap_or_else(|| data_dir.join("postfix-virtual.cf"));

        let max_message_size = self.positive(
            "max_message_size",
            raw.max_message_size,
            DEFAULT_MAX_MESSAGE_SIZE,
        )?;
        let workers = self.positive("workers", raw.workers, DEFAULT_WORKERS)?;
        let event_loops = raw.event_loops.unwrap_or(0);
        let runtime = match raw.runtime {
            None => RuntimeKind::default(),
            Some(s) => s
                .get_ref()
                .parse()
                .map_err(|why: String| self.invalid("runtime", s.span(), why))?,
        };

        let tls = match (raw.tls.cert, raw.tls.key) {
            (Some(c), None) => {
                return Err(self.invalid("tls.cert", c.span(), "is set but tls.key is not"))
            }
            (None, Some(k)) => {
                return Err(self.invalid("tls.key", k.span(), "is set but tls.cert is not"))
            }
            (cert, key) => TlsFiles {
                cert: self.path("tls.cert", cert, base)?,
                key: self.path("tls.key", key, base)?,
            },
        };

        let d = Limits::default();
        let l = raw.limits;
        let max_line_length = match l.max_line_length {
            None => d.max_line_length,
            Some(s) if *s.get_ref() < MIN_LINE_LENGTH => {
                return Err(self.invalid(
                    "limits.max_line_length",
                    s.span(),
                    format!("must be at least {MIN_LINE_LENGTH} (RFC 5321)"),
                ))
            }
            Some(s) => s.into_inner(),
        };
        let secs = |key, v, default: Duration| {
            self.positive(key, v, default.as_secs())
                .map(Duration::from_secs)
        };
        let limits = Limits {
            max_connections: self.positive(
                "limits.max_connections",
                l.max_connections,
                d.max_connections,
            )?,
            max_connections_per_ip: self.positive(
                "limits.max_connections_per_ip",
                l.max_connections_per_ip,
                d.max_connections_per_ip,
            )?,
            max_recipients: self.positive(
                "limits.max_recipients",
                l.max_recipients,
                d.max_recipients,
            )?,
            max_line_length,
            command_timeout: secs(
                "limits.command_timeout",
                l.command_timeout,
                d.command_timeout,
            )?,
            data_timeout: secs("limits.data_timeout", l.data_timeout, d.data_timeout)?,
            write_timeout: secs("limits.write_timeout", l.write_timeout, d.write_timeout)?,
            max_errors: self.positive("limits.max_errors", l.max_errors, d.max_errors)?,
            max_auth_failures: self.positive(
                "limits.max_auth_failures",
                l.max_auth_failures,
                d.max_auth_failures,
            )?,
            max_hops: self.positive("limits.max_hops", l.max_hops, d.max_hops)?,
        };

        let smtp_enabled = raw.smtp.enabled.unwrap_or(true);
        let smtp = SmtpListener {
            enabled: smtp_enabled,
            listen: self.listen(
                "smtp.listen",
                smtp_enabled,
                raw.smtp.listen,
                DEFAULT_SMTP_LISTEN,
            )?,
            starttls: raw.smtp.starttls.unwrap_or(false),
        };
        let sub_enabled = raw.submission.enabled.unwrap_or(true);
        let submission = Listener {
            enabled: sub_enabled,
            listen: self.listen(
                "submission.listen",
                sub_enabled,
                raw.submission.listen,
                DEFAULT_SUBMISSION_LISTEN,
            )?,
        };
        let subs_enabled = raw.submissions.enabled.unwrap_or(false);
        let submissions = Listener {
            enabled: subs_enabled,
            listen: self.listen(
                "submissions.listen",
                subs_enabled,
                raw.submissions.listen,
                DEFAULT_SUBMISSIONS_LISTEN,
            )?,
        };

        let imap_enabled = raw.imap.enabled.unwrap_or(true);
        let imap = Listener {
            enabled: imap_enabled,
            listen: self.listen(
                "imap.listen",
                imap_enabled,
                raw.imap.listen,
                DEFAULT_IMAP_LISTEN,
            )?,
        };
        let imaps_enabled = raw.imaps.enabled.unwrap_or(true);
        let imaps = Listener {
            enabled: imaps_enabled,
            listen: self.listen(
                "imaps.listen",
                imaps_enabled,
                raw.imaps.listen,
                DEFAULT_IMAPS_LISTEN,
            )?,
        };
        // docker-mailserver ships POP3 off (ENABLE_POP3=0): both ports are opt-in.
        let pop3_enabled = raw.pop3.enabled.unwrap_or(false);
        let pop3 = Listener {
            enabled: pop3_enabled,
            listen: self.listen(
                "pop3.listen",
                pop3_enabled,
                raw.pop3.listen,
                DEFAULT_POP3_LISTEN,
            )?,
        };
        let pop3s_enabled = raw.pop3s.enabled.unwrap_or(false);
        let pop3s = Listener {
            enabled: pop3s_enabled,
            listen: self.listen(
                "pop3s.listen",
                pop3s_enabled,
                raw.pop3s.listen,
                DEFAULT_POP3S_LISTEN,
            )?,
        };

        let relay = self.relay(raw.relay, base, &data_dir)?;
        let dns = self.dns(raw.dns)?;
        let queue = self.queue(raw.queue)?;
        let outbound = self.outbound(raw.outbound, &hostname)?;

        Ok(Config {
            hostname,
            data_dir,
            domains,
            accounts_file,
            aliases_file,
            max_message_size,
            tls,
            limits,
            smtp,
            submission,
            submissions,
            imap,
            imaps,
            pop3,
            pop3s,
            workers,
            event_loops,
            runtime,
            relay,
            dns,
            queue,
            outbound,
        })
    }

    fn relay(&self, raw: RawRelay, base: &Path, data_dir: &Path) -> Result<Relay, ConfigError> {
        let mut routes = Vec::new();
        if let Some(table) = raw.routes {
            let span = table.span();
            for (domain, target) in table.into_inner() {
                let key = format!("relay.routes.{domain}");
                let name = domain.to_ascii_lowercase();
                if let Err(why) = check_dns_name(&name) {
                    return Err(self.invalid(&key, span.clone(), why));
                }
                let hop = NextHop::parse(target.get_ref())
                    .map_err(|why| self.invalid(&key, target.span(), why))?;
                if routes.iter().any(|(d, _)| *d == name) {
                    return Err(self.invalid(&key, span.clone(), "is given twice"));
                }
                routes.push((name, hop));
            }
        }
        let relayhost = match raw.relayhost {
            None => None,
            Some(s) if s.get_ref().trim().is_empty() => None,
            Some(s) => Some(
                NextHop::parse(s.get_ref())
                    .map_err(|why| self.invalid("relay.relayhost", s.span(), why))?,
            ),
        };
        let sasl_password_file = self
            .path("relay.sasl_password_file", raw.sasl_password_file, base)?
            .unwrap_or_else(|| data_dir.join("postfix-sasl-password.cf"));
        Ok(Relay {
            routes,
            relayhost,
            sasl_password_file,
        })
    }

    fn dns(&self, raw: RawDns) -> Result<Dns, ConfigError> {
        let mut servers = Vec::new();
        if let Some(list) = raw.servers {
            for (i, s) in list.into_inner().into_iter().enumerate() {
                let addr = parse_dns_server(s.get_ref()).ok_or_else(|| {
                    self.invalid(
                        &format!("dns.servers[{i}]"),
                        s.span(),
                        format!("{:?} is not an IP address or IP:port", s.get_ref()),
                    )
                })?;
                servers.push(addr);
            }
        }
        let timeout = self
            .positive("dns.timeout", raw.timeout, DEFAULT_DNS_TIMEOUT.as_secs())
            .map(Duration::from_secs)?;
        Ok(Dns { servers, timeout })
    }

    fn queue(&self, raw: RawQueue) -> Result<QueueSettings, ConfigError> {
        let max_age = match raw.max_age {
            None => DEFAULT_MAX_AGE,
            Some(s) => {
                let span = s.span();
                let d = match s.into_inner() {
                    RawDuration::Seconds(n) => Duration::from_secs(n),
                    RawDuration::Text(t) => parse_duration(&t)
                        .map_err(|why| self.invalid("queue.max_age", span.clone(), why))?,
                };
                if d.is_zero() {
                    return Err(self.invalid("queue.max_age", span, "must be greater than 0"));
                }
                d
            }
        };
        let retry_intervals = match raw.retry_intervals {
            None => DEFAULT_RETRY_INTERVALS.map(Duration::from_secs).to_vec(),
            Some(s) if s.get_ref().is_empty() => {
                return Err(self.invalid(
                    "queue.retry_intervals",
                    s.span(),
                    "needs at least one interval",
                ))
            }
            Some(s) if s.get_ref().contains(&0) => {
                return Err(self.invalid(
                    "queue.retry_intervals",
                    s.span(),
                    "intervals must be greater than 0",
                ))
            }
            Some(s) => s
                .into_inner()
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        };
        Ok(QueueSettings {
            max_age,
            retry_intervals,
        })
    }

    fn outbound(&self, raw: RawOutbound, hostname: &str) -> Result<Outbound, ConfigError> {
        let tls = match raw.tls {
            None => OutboundTls::default(),
            Some(s) => match s.get_ref().as_str() {
                "may" => OutboundTls::May,
                "encrypt" => OutboundTls::Encrypt,
                "none" => OutboundTls::None,
                other => {
                    return Err(self.invalid(
                        "outbound.tls",
                        s.span(),
                        format!("{other:?} must be \"may\", \"encrypt\" or \"none\""),
                    ))
                }
            },
        };
        let helo_name = match raw.helo_name {
            None => hostname.to_string(),
            Some(s) => {
                let span = s.span();
                let name = s.into_inner().to_ascii_lowercase();
                check_dns_name(&name)
                    .map_err(|why| self.invalid("outbound.helo_name", span, why))?;
                name
            }
        };
        Ok(Outbound {
            tls,
            tls_verify: raw.tls_verify.unwrap_or(false),
            concurrency_per_destination: self.positive(
                "outbound.concurrency_per_destination",
                raw.concurrency_per_destination,
                DEFAULT_CONCURRENCY_PER_DESTINATION,
            )?,
            max_connections: self.positive(
                "outbound.max_connections",
                raw.max_connections,
                DEFAULT_OUTBOUND_CONNECTIONS,
            )?,
            helo_name,
            connect_timeout: self
                .positive(
                    "outbound.connect_timeout",
                    raw.connect_timeout,
                    DEFAULT_CONNECT_TIMEOUT.as_secs(),
                )
                .map(Duration::from_secs)?,
        })
    }
}

/// `1.2.3.4`, `1.2.3.4:5353`, `::1`, `[::1]:5353`: a resolver's address, port 53 unless
/// given.
pub fn parse_dns_server(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let ip = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    ip.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// `"90"`, `"90s"`, `"15m"`, `"36h"`, `"5d"`, `"1w"`, or several together: `"1d12h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("must not be empty".into());
    }
    let bad = || format!("{text:?} is not a duration (e.g. 3600, \"90m\", \"5d\", \"1d12h\")");
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = total.checked_add(n).ok_or_else(bad)?;
    }
    Ok(Duration::from_secs(total))
}

/// Checks a host or domain name: dot-separated labels of letters, digits and hyphens.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err("is longer than 253 characters".into());
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name:?} is not a valid DNS name (label length)"));
        }
        if label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(format!("{name:?} is not a valid DNS name"));
        }
    }
    Ok(())
}

/// Turns a toml error into one naming the file, line, column and, where it can be told,
/// the dotted key.
fn parse_error(text: &str, origin: &str, e: &toml::de::Error) -> ConfigError {
    let (line, column, key) = match e.span() {
        Some(span) => {
            let (line, column) = line_col(text, span.start);
            (line, column, key_at(text, span.start))
        }
        None => (1, 1, None),
    };
    ConfigError::Parse {
        origin: origin.to_string(),
        line,
        column,
        key,
        message: e.message().trim_end().to_string(),
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The dotted key whose line holds byte `offset`: the nearest `key =` at or above it,
/// prefixed by the nearest `[table]` header above that. toml's errors carry the key path
/// only in their rendered text, so it is recovered from the source; the configuration's
/// simple layout (one level of tables, one key per line) makes this reliable.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let mut lines = text[..line_start].lines().rev();
    let current = text[line_start..].lines().next().unwrap_or("");

    let mut key = None;
    for line in std::iter::once(current).chain(&mut lines) {
        let t = line.trim_start();
        if let Some(table) = table_header(t) {
            // The error is on a header itself (e.g. an unknown table).
            return key.or(Some(table.to_string()));
        }
        if let Some((k, _)) = t.split_once('=') {
            let k = k.trim().trim_matches('"');
            if !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                key = Some(k.to_string());
                break;
            }
        }
    }
    let key = key?;
    for line in lines {
        if let Some(table) = table_header(line.trim_start()) {
            return Some(format!("{table}.{key}"));
        }
    }
    Some(key)
}

fn table_header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('[')?;
    if rest.starts_with('[') {
        return None;
    }
    let end = rest.find(']')?;
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("/etc/ironpost"), "test.toml")
    }

    #[test]
    fn empty_file_equals_embedded_default() {
        let base = Path::new("/srv");
        let empty = Config::from_toml("", base, "empty").unwrap();
        assert_eq!(empty, Config::embedded_default(base));
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.hostname, "localhost");
        assert_eq!(c.data_dir, Path::new("/etc/ironpost/ironpost-data"));
        assert_eq!(c.domains, vec!["example.test"]);
        assert_eq!(
            c.accounts_file,
            Path::new("/etc/ironpost/ironpost-data/postfix-accounts.cf")
        );
        assert_eq!(
            c.aliases_file,
            Path::new("/etc/ironpost/ironpost-data/postfix-virtual.cf")
        );
        assert_eq!(c.max_message_size, 10_240_000);
        assert_eq!(c.tls, TlsFiles::default());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.limits.max_line_length, 2048);
        assert_eq!(c.limits.command_timeout, Duration::from_secs(300));
        assert_eq!(c.limits.write_timeout, Duration::from_secs(300));
        assert_eq!(c.workers, 32);
        assert_eq!(c.event_loops, 0);
        assert!(c.event_loop_count() >= 1);
        assert_eq!(c.runtime, RuntimeKind::Mio);
        assert!(c.smtp.enabled && !c.smtp.starttls);
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:10025".parse().unwrap()]);
        assert!(c.submission.enabled);
        assert_eq!(
            c.submission.listen,
            vec!["127.0.0.1:10587".parse().unwrap()]
        );
        assert!(!c.submissions.enabled);
        assert_eq!(
            c.submissions.listen,
            vec!["127.0.0.1:10465".parse().unwrap()]
        );
        assert!(c.imap.enabled);
        assert_eq!(c.imap.listen, vec!["127.0.0.1:10143".parse().unwrap()]);
        assert!(c.imaps.enabled);
        assert_eq!(c.imaps.listen, vec!["127.0.0.1:10993".parse().unwrap()]);
        assert!(!c.pop3.enabled, "POP3 is off unless switched on");
        assert_eq!(c.pop3.listen, vec!["127.0.0.1:10110".parse().unwrap()]);
        assert!(!c.pop3s.enabled);
        assert_eq!(c.pop3s.listen, vec!["127.0.0.1:10995".parse().unwrap()]);
    }

    #[test]
    fn every_key_parsed() {
        let c = parse(
            r#"
hostname = "MX.Example.COM"
data_dir = "/var/mail/ironpost"
domains = ["Example.com", "example.org", "example.com"]
accounts_file = "/etc/dms/postfix-accounts.cf"
aliases_file = "virtual.cf"
max_message_size = 5000000
workers = 4
event_loops = 2
runtime = "smol"

[tls]
cert = "/etc/ssl/c.pem"
key = "k.pem"

[limits]
max_connections = 10
max_connections_per_ip = 2
max_recipients = 50
max_line_length = 1000
command_timeout = 60
data_timeout = 30
write_timeout = 120
max_errors = 5
max_auth_failures = 1
max_hops = 20

[smtp]
enabled = false
listen = ["0.0.0.0:25", "[::]:25"]
starttls = true

[submission]
enabled = true
listen = ["0.0.0.0:587"]

[submissions]
enabled = true
listen = ["[::1]:465"]

[imap]
enabled = false
listen = ["0.0.0.0:143"]

[imaps]
enabled = true
listen = ["[::]:993", "0.0.0.0:993"]

[pop3]
enabled = true
listen = ["0.0.0.0:110"]

[pop3s]
enabled = true
listen = ["[::]:995"]
"#,
        )
        .unwrap();
        assert_eq!(c.hostname, "mx.example.com");
        assert_eq!(c.data_dir, Path::new("/var/mail/ironpost"));
        assert_eq!(c.domains, vec!["example.com", "example.org"]);
        assert_eq!(c.accounts_file, Path::new("/etc/dms/postfix-accounts.cf"));
        assert_eq!(c.aliases_file, Path::new("/etc/ironpost/virtual.cf"));
        assert_eq!(c.max_message_size, 5_000_000);
        assert_eq!(c.workers, 4);
        assert_eq!(c.event_loops, 2);
        assert_eq!(c.event_loop_count(), 2);
        assert_eq!(c.runtime, RuntimeKind::Smol);
        assert_eq!(c.tls.cert.as_deref(), Some(Path::new("/etc/ssl/c.pem")));
        assert_eq!(c.tls.key.as_deref(), Some(Path::new("/etc/ironpost/k.pem")));
        assert_eq!(
            c.limits,
            Limits {
                max_connections: 10,
                max_connections_per_ip: 2,
                max_recipients: 50,
                max_line_length: 1000,
                command_timeout: Duration::from_secs(60),
                data_timeout: Duration::from_secs(30),
                write_timeout: Duration::from_secs(120),
                max_errors: 5,
                max_auth_failures: 1,
                max_hops: 20,
            }
        );
        assert!(!c.smtp.enabled && c.smtp.starttls);
        assert_eq!(
            c.smtp.listen,
            vec!["0.0.0.0:25".parse().unwrap(), "[::]:25".parse().unwrap()]
        );
        assert_eq!(c.submission.listen, vec!["0.0.0.0:587".parse().unwrap()]);
        assert!(c.submissions.enabled);
        assert_eq!(c.submissions.listen, vec!["[::1]:465".parse().unwrap()]);
        assert!(!c.imap.enabled);
        assert_eq!(c.imap.listen, vec!["0.0.0.0:143".parse().unwrap()]);
        assert!(c.imaps.enabled);
        assert_eq!(
            c.imaps.listen,
            vec!["[::]:993".parse().unwrap(), "0.0.0.0:993".parse().unwrap()]
        );
        assert!(c.pop3.enabled && c.pop3s.enabled);
        assert_eq!(c.pop3.listen, vec!["0.0.0.0:110".parse().unwrap()]);
        assert_eq!(c.pop3s.listen, vec!["[::]:995".parse().unwrap()]);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("hostname = \"a\"\n\n[limits]\nmax_conections = 5\n").unwrap_err();
        match &err {
            ConfigError::Parse {
                origin, line, key, ..
            } => {
                assert_eq!(origin, "test.toml");
                assert_eq!(*line, 4);
                assert_eq!(key.as_deref(), Some("limits.max_conections"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.starts_with("test.toml:4:1: "), "{msg}");
        assert!(msg.contains("max_conections"), "{msg}");

        let err = parse("colour = 1\n").unwrap_err().to_string();
        assert!(
            err.contains("test.toml:1:") && err.contains("colour"),
            "{err}"
        );

        let err = parse("[smtpd]\nenabled = true\n").unwrap_err().to_string();
        assert!(
            err.contains("test.toml:1:") && err.contains("smtpd"),
            "{err}"
        );
    }

    #[test]
    fn wrong_type() {
        let err = parse("workers = 4\n[limits]\ndata_timeout = \"3m\"\n").unwrap_err();
        match &err {
            ConfigError::Parse {
                line, column, key, ..
            } => {
                assert_eq!((*line, *column), (3, 16));
                assert_eq!(key.as_deref(), Some("limits.data_timeout"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("invalid type"), "{err}");

        let err = parse("workers = -1\n").unwrap_err().to_string();
        assert!(err.contains("test.toml:1:11: workers:"), "{err}");
    }

    #[test]
    fn bad_socket_address() {
        let err =
            parse("[submission]\nlisten = [\n  \"127.0.0.1:587\",\n  \"localhost:587\",\n]\n")
                .unwrap_err();
        match &err {
            ConfigError::Parse { line, key, .. } => {
                assert_eq!(*line, 4);
                assert_eq!(key.as_deref(), Some("submission.listen"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn syntax_error_has_position() {
        let err = parse("hostname = \"a\"\nworkers = \n").unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let c = parse("data_dir = \"data\"\naccounts_file = \"../acc.cf\"\n").unwrap();
        assert_eq!(c.data_dir, Path::new("/etc/ironpost/data"));
        assert_eq!(c.accounts_file, Path::new("/etc/ironpost/../acc.cf"));
        assert_eq!(
            c.aliases_file,
            Path::new("/etc/ironpost/data/postfix-virtual.cf")
        );
        // A relative base directory is made absolute too.
        let c = Config::from_toml("", Path::new("conf"), "x").unwrap();
        assert!(c.data_dir.is_absolute(), "{:?}", c.data_dir);
    }

    #[test]
    fn load_from_file() {
        let dir = std::env::temp_dir().join(format!("ironpost-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ironpost.toml");
        std::fs::write(&path, "data_dir = \"d\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.data_dir, dir.join("d"));
        std::fs::write(&path, "[limits]\nmax_errors = \"x\"\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("ironpost.toml:2:"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();

        let err = Config::load(&dir.join("missing.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("missing.toml"));
    }

    fn invalid(text: &str) -> (String, usize, String) {
        match parse(text).unwrap_err() {
            e @ ConfigError::Invalid { .. } => {
                let s = e.to_string();
                let ConfigError::Invalid { key, line, .. } = e else {
                    unreachable!()
                };
                (key, line, s)
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn cert_without_key() {
        let (key, line, msg) = invalid("\n[tls]\ncert = \"c.pem\"\n");
        assert_eq!((key.as_str(), line), ("tls.cert", 3));
        assert!(msg.starts_with("test.toml:3: tls.cert: "), "{msg}");
        let (key, _, _) = invalid("[tls]\nkey = \"k.pem\"\n");
        assert_eq!(key, "tls.key");
    }

    #[test]
    fn validation_errors() {
        assert_eq!(invalid("domains = []").0, "domains");
        assert_eq!(
            invalid("domains = [\"ok.test\", \"bad domain\"]").0,
            "domains[1]"
        );
        assert_eq!(invalid("hostname = \"mx_1.example\"").0, "hostname");
        assert_eq!(invalid("hostname = \"\"").0, "hostname");
        assert_eq!(invalid("max_message_size = 0").0, "max_message_size");
        assert_eq!(invalid("workers = 0").0, "workers");
        let (key, line, _) = invalid("[limits]\nmax_line_length = 511");
        assert_eq!((key.as_str(), line), ("limits.max_line_length", 2));
        assert!(parse("[limits]\nmax_line_length = 512").is_ok());
        assert_eq!(
            invalid("[limits]\ncommand_timeout = 0").0,
            "limits.command_timeout"
        );
        assert_eq!(
            invalid("[limits]\nwrite_timeout = 0").0,
            "limits.write_timeout"
        );
        assert_eq!(invalid("[limits]\nmax_hops = 0").0, "limits.max_hops");
        assert!(parse("[limits]\nmax_hop = 5").is_err(), "no such key");
        assert_eq!(invalid("[smtp]\nlisten = []").0, "smtp.listen");
        assert!(parse("[smtp]\nenabled = false\nlisten = []").is_ok());
        let (key, line, _) = invalid("[imap]\nlisten = []");
        assert_eq!((key.as_str(), line), ("imap.listen", 2));
        assert_eq!(
            invalid("[imaps]\nenabled = true\nlisten = []").0,
            "imaps.listen"
        );
        assert!(parse("[imaps]\nenabled = false\nlisten = []").is_ok());
        assert!(parse("[imap]\nstarttls = true").is_err(), "no such key");
        let (key, line, _) = invalid("\n[pop3]\nenabled = true\nlisten = []");
        assert_eq!((key.as_str(), line), ("pop3.listen", 4));
        assert_eq!(
            invalid("[pop3s]\nenabled = true\nlisten = []").0,
            "pop3s.listen"
        );
        assert!(
            parse("[pop3]\nlisten = []").is_ok(),
            "off, so no address needed"
        );
        assert!(parse("[pop3]\nstls = true").is_err(), "no such key");
        assert!(parse("[pop3s]\nenabled = \"yes\"").is_err(), "a boolean");
        assert_eq!(invalid("data_dir = \"\"").0, "data_dir");
    }

    #[test]
    fn runtime_choice() {
        assert_eq!(
            parse("runtime = \"mio\"").unwrap().runtime,
            RuntimeKind::Mio
        );
        assert_eq!(
            parse("runtime = \"smol\"").unwrap().runtime,
            RuntimeKind::Smol
        );
        let (key, line, msg) = invalid("workers = 2\nruntime = \"tokio\"\n");
        assert_eq!((key.as_str(), line), ("runtime", 2));
        assert!(
            msg.contains("\"tokio\"") && msg.contains("\"smol\""),
            "{msg}"
        );
        // Names are exact, as everywhere else in the file.
        assert_eq!(invalid("runtime = \"Smol\"").0, "runtime");
        let err = parse("runtime = 1").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Parse { key: Some(k), .. } if k == "runtime"),
            "{err:?}"
        );
        for kind in [RuntimeKind::Mio, RuntimeKind::Smol] {
            assert_eq!(kind.name().parse::<RuntimeKind>(), Ok(kind));
        }
    }

    #[test]
    fn embedded_default_parses() {
        let c = Config::embedded_default(Path::new("/tmp"));
        assert_eq!(c.data_dir, Path::new("/tmp/ironpost-data"));
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn outbound_defaults() {
        let c = parse("").unwrap();
        assert!(c.relay.routes.is_empty());
        assert_eq!(c.relay.relayhost, None);
        assert_eq!(
            c.relay.sasl_password_file,
            Path::new("/etc/ironpost/ironpost-data/postfix-sasl-password.cf")
        );
        assert!(c.dns.servers.is_empty());
        assert_eq!(c.dns.timeout, Duration::from_secs(5));
        assert_eq!(c.queue.max_age, Duration::from_secs(5 * 86400));
        assert_eq!(
            c.queue.retry_intervals,
            [60, 300, 900, 1800, 3600].map(Duration::from_secs).to_vec()
        );
        assert_eq!(c.outbound.tls, OutboundTls::May);
        assert!(!c.outbound.tls_verify);
        assert_eq!(c.outbound.concurrency_per_destination, 4);
        assert_eq!(c.outbound.max_connections, 20);
        assert_eq!(c.outbound.helo_name, "localhost");
        assert_eq!(c.outbound.connect_timeout, Duration::from_secs(30));
        // helo_name follows hostname unless set.
        assert_eq!(
            parse("hostname = \"mx.example.com\"")
                .unwrap()
                .outbound
                .helo_name,
            "mx.example.com"
        );
    }

    #[test]
    fn outbound_keys_parsed() {
        let c = parse(
            r#"
[relay]
routes = { "Example.NET" = "127.0.0.1:2626", "example.org" = "[mx.example.org]:2525" }
relayhost = "[smtp.isp.test]:587"
sasl_password_file = "sasl.cf"

[dns]
servers = ["127.0.0.1:5353", "192.0.2.53", "::1"]
timeout = 2

[queue]
max_age = "1d12h"
retry_intervals = [1, 2, 5]

[outbound]
tls = "encrypt"
tls_verify = true
concurrency_per_destination = 2
max_connections = 8
helo_name = "Out.Example.COM"
connect_timeout = 10
"#,
        )
        .unwrap();
        assert_eq!(
            c.relay.routes,
            vec![
                (
                    "example.net".to_string(),
                    NextHop::parse("127.0.0.1:2626").unwrap()
                ),
                (
                    "example.org".to_string(),
                    NextHop::parse("[mx.example.org]:2525").unwrap()
                ),
            ]
        );
        assert_eq!(
            c.relay.relayhost,
            Some(NextHop::parse("[smtp.isp.test]:587").unwrap())
        );
        assert_eq!(
            c.relay.sasl_password_file,
            Path::new("/etc/ironpost/sasl.cf")
        );
        assert_eq!(
            c.dns.servers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "192.0.2.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(c.dns.timeout, Duration::from_secs(2));
        assert_eq!(c.queue.max_age, Duration::from_secs(36 * 3600));
        assert_eq!(
            c.queue.retry_intervals,
            [1, 2, 5].map(Duration::from_secs).to_vec()
        );
        assert_eq!(c.outbound.tls, OutboundTls::Encrypt);
        assert!(c.outbound.tls_verify);
        assert_eq!(c.outbound.concurrency_per_destination, 2);
        assert_eq!(c.outbound.max_connections, 8);
        assert_eq!(c.outbound.helo_name, "out.example.com");
        assert_eq!(c.outbound.connect_timeout, Duration::from_secs(10));

        // max_age as plain seconds; an empty relayhost is none.
        let c = parse("[queue]\nmax_age = 90\n[relay]\nrelayhost = \"\"\n").unwrap();
        assert_eq!(c.queue.max_age, Duration::from_secs(90));
        assert_eq!(c.relay.relayhost, None);
    }

    #[test]
    fn outbound_validation() {
        let (key, line, msg) = invalid("[relay]\nroutes = { \"a.test\" = \"x:y\" }\n");
        assert_eq!((key.as_str(), line), ("relay.routes.a.test", 2));
        assert!(msg.contains("not a next hop"), "{msg}");
        assert_eq!(
            invalid("[relay]\nroutes = { \"bad domain\" = \"127.0.0.1\" }").0,
            "relay.routes.bad domain"
        );
        assert_eq!(invalid("[relay]\nrelayhost = \"[x\"").0, "relay.relayhost");
        assert_eq!(
            invalid("[dns]\nservers = [\"dns.google\"]").0,
            "dns.servers[0]"
        );
        assert_eq!(invalid("[dns]\ntimeout = 0").0, "dns.timeout");
        let (key, line, _) = invalid("[queue]\n\nmax_age = \"5 days\"");
        assert_eq!((key.as_str(), line), ("queue.max_age", 3));
        assert_eq!(invalid("[queue]\nmax_age = 0").0, "queue.max_age");
        assert_eq!(
            invalid("[queue]\nretry_intervals = []").0,
            "queue.retry_intervals"
        );
        assert_eq!(
            invalid("[queue]\nretry_intervals = [5, 0]").0,
            "queue.retry_intervals"
        );
        let (key, _, msg) = invalid("[outbound]\ntls = \"dane\"");
        assert_eq!(key, "outbound.tls");
        assert!(msg.contains("\"may\""), "{msg}");
        assert_eq!(
            invalid("[outbound]\nconcurrency_per_destination = 0").0,
            "outbound.concurrency_per_destination"
        );
        assert_eq!(
            invalid("[outbound]\nmax_connections = 0").0,
            "outbound.max_connections"
        );
        assert_eq!(
            invalid("[outbound]\nhelo_name = \"a b\"").0,
            "outbound.helo_name"
        );
        assert_eq!(
            invalid("[outbound]\nconnect_timeout = 0").0,
            "outbound.connect_timeout"
        );
        let err = parse("[outbound]\ntls_verfy = true\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls_verfy"), "{err}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("36h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("5d"), Ok(Duration::from_secs(5 * 86400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(
            parse_duration(" 1d12h30m "),
            Ok(Duration::from_secs(131_400))
        );
        for bad in ["", "d", "5x", "1.5h", "-1", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
