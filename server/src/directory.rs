//! Accounts and aliases, read from docker-mailserver's own files so that an existing
//! installation's `postfix-accounts.cf` and `postfix-virtual.cf` work unchanged.
//!
//! - `postfix-accounts.cf`: `user@domain|{SCHEME}hash[|more fields]`, one account a line.
//!   Supported schemes: `SHA512-CRYPT` (docker-mailserver's default), `SHA256-CRYPT`,
//!   `BLF-CRYPT`, `ARGON2ID`, `ARGON2I`, and `CRYPT` holding one of those crypt(3) forms;
//!   a line without `{SCHEME}` is read as `SHA512-CRYPT` (Dovecot's default there).
//!   Lines with other schemes are skipped with a warning: an account we cannot authenticate
//!   is better reported at start than accepted for mail and then locked out.
//! - `postfix-virtual.cf`: `alias@domain target[,target...]` (targets split on commas and
//!   whitespace; a line starting with whitespace continues the previous one, as in Postfix
//!   tables), and the catch-all `@domain target...`.
//!
//! Addresses compare case-insensitively (local part included, as Dovecot does by default),
//! and `user+tag@domain` falls back to `user@domain` (docker-mailserver's recipient
//! delimiter).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use subtle::ConstantTimeEq;
use tracing::{info, warn};

/// How deep alias expansion may go before the rest of a chain is dropped.
const MAX_ALIAS_DEPTH: usize = 8;

/// Compared against when the user does not exist, so that a login attempt for an unknown
/// user costs as long as one for a known user (SHA512-CRYPT, 5000 rounds, as the accounts
/// file's default). The password is irrelevant; the result is thrown away.
const DUMMY_HASH: &str = "$6$dummydummydummy$bl7BKXJ83zBjHfLBvt0uxTuR.hQ8G36bNjNjb9WngNG0sIROVwep6Q.ldUs6MRo/kwCfwkqX71wEaXb6Z0h161";

/// Why the account or alias files could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid address {address:?}: {reason}")]
    InvalidAddress {
        address: String,
        reason: &'static str,
    },
    #[error("cannot hash password: {0}")]
    Hash(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DirectoryError + '_ {
    move |source| DirectoryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A local mailbox an address leads to, lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LocalMailbox {
    pub local: String,
    pub domain: String,
}

impl fmt::Display for LocalMailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// What a recipient address leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The address is in one of our domains and leads somewhere: deliver into `mailboxes`
    /// and relay to `forward` (addresses in foreign domains reached through aliases). At
    /// least one of the two is non-empty; both are deduplicated and keep expansion order.
    Local {
        mailboxes: Vec<LocalMailbox>,
        forward: Vec<String>,
    },
    /// The domain is not ours: relaying, which needs an authenticated sender.
    Foreign,
    /// Our domain, but no account or alias (or only aliases leading nowhere): reject.
    Unknown,
}

/// A parsed password hash, checked at load so a broken line is reported at start.
#[derive(Clone)]
enum PasswordHash {
    /// SHA-crypt `$6$` (512) or `$5$` (256): rounds, salt, encoded hash.
    ShaCrypt {
        sha512: bool,
        rounds: usize,
        salt: String,
        hash: String,
    },
    /// bcrypt `$2y$`/`$2b$`/`$2a$`.
    Bcrypt(String),
    /// Argon2 PHC string `$argon2id$...` / `$argon2i$...`.
    Argon2(String),
}

/// Names the scheme only, so that a logged `Directory` does not leak hashes.
impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PasswordHash::ShaCrypt { sha512: true, .. } => "SHA512-CRYPT",
            PasswordHash::ShaCrypt { sha512: false, .. } => "SHA256-CRYPT",
            PasswordHash::Bcrypt(_) => "BLF-CRYPT",
            PasswordHash::Argon2(_) => "ARGON2",
        })
    }
}

impl PasswordHash {
    /// Parses `{SCHEME}hash`; Err names what is wrong, for the warning.
    fn parse(field: &str) -> Result<PasswordHash, String> {
        let (scheme, hash) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
            Some((scheme, hash)) => (scheme.to_ascii_uppercase(), hash),
            None => ("SHA512-CRYPT".to_string(), field),
        };
        let parsed = match scheme.as_str() {
            "SHA512-CRYPT" => parse_sha_crypt(hash, true),
            "SHA256-CRYPT" => parse_sha_crypt(hash, false),
            "BLF-CRYPT" => parse_bcrypt(hash),
            "ARGON2ID" | "ARGON2I" => parse_argon2(hash, &scheme),
            "CRYPT" => parse_sha_crypt(hash, true)
                .or_else(|| parse_sha_crypt(hash, false))
                .or_else(|| parse_bcrypt(hash)),
            _ => return Err(format!("unsupported password scheme {{{scheme}}}")),
        };
        parsed.ok_or_else(|| format!("malformed {{{scheme}}} hash"))
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::ShaCrypt {
                sha512,
                rounds,
                salt,
                hash,
            } => {
                let computed = if *sha512 {
                    sha_crypt::Sha512Params::new(*rounds).and_then(|p| {
                        sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    })
                } else {
                    sha_crypt::Sha256Params::new(*rounds).and_then(|p| {
                        sha_crypt::sha256_crypt_b64(password.as_bytes(), salt.as_bytes(), &p)
                    })
                };
                match computed {
                    Ok(c) => c.as_bytes().ct_eq(hash.as_bytes()).into(),
                    Err(_) => false,
                }
            }
            // bcrypt compares the derived bytes with subtle itself.
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            // password-hash's Output comparison is constant-time (subtle).
            PasswordHash::Argon2(h) => {
                use argon2::password_hash::{PasswordHash as Phc, PasswordVerifier};
                match Phc::new(h) {
                    Ok(phc) => argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &phc)
                        .is_ok(),
                    Err(_) => false,
                }
            }
        }
    }
}

/// `$6$[rounds=N$]salt$hash` or `$5$...`. Rounds are clamped as glibc's crypt does, and the
/// salt is cut to 16 characters, so hashes made by other tools verify the same way.
fn parse_sha_crypt(s: &str, sha512: bool) -> Option<PasswordHash> {
    let rest = s.strip_prefix(if sha512 { "$6$" } else { "$5$" })?;
    let mut parts: Vec<&str> = rest.split('$').collect();
    let mut rounds = sha_crypt::ROUNDS_DEFAULT;
    if let Some(r) = parts.first().and_then(|p| p.strip_prefix("rounds=")) {
        let n: u64 = r.parse().ok()?;
        rounds = n.clamp(sha_crypt::ROUNDS_MIN as u64, sha_crypt::ROUNDS_MAX as u64) as usize;
        parts.remove(0);
    }
    let [salt, hash] = parts[..] else {
        return None;
    };
    let expected_len = if sha512 { 86 } else { 43 };
    if hash.len() != expected_len
        || !hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    {
        return None;
    }
    let salt: String = salt.chars().take(16).collect();
    Some(PasswordHash::ShaCrypt {
        sha512,
        rounds,
        salt,
        hash: hash.to_string(),
    })
}

fn parse_bcrypt(s: &str) -> Option<PasswordHash> {
    let ok = ["$2y$", "$2b$", "$2a$"].iter().any(|p| s.starts_with(p)) && s.len() == 60;
    ok.then(|| PasswordHash::Bcrypt(s.to_string()))
}

fn parse_argon2(s: &str, scheme: &str) -> Option<PasswordHash> {
    let phc = argon2::password_hash::PasswordHash::new(s).ok()?;
    let want = if scheme == "ARGON2ID" {
        "argon2id"
    } else {
        "argon2i"
    };
    (phc.algorithm.as_str() == want && phc.hash.is_some() && phc.salt.is_some())
        .then(|| PasswordHash::Argon2(s.to_string()))
}

/// An address split into lowercased local part and domain. Local parts of foreign
/// addresses keep their case when forwarded (see `Directory::forward_form`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addr {
    local: String,
    domain: String,
}

impl Addr {
    fn parse(address: &str) -> Option<Addr> {
        let (local, domain) = address.trim().rsplit_once('@')?;
        if domain.is_empty() || domain.contains(char::is_whitespace) {
            return None;
        }
        Some(Addr {
            local: local.to_lowercase(),
            domain: domain.to_ascii_lowercase(),
        })
    }

    fn key(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    /// `user+tag` → `user`, for the recipient-delimiter fallback.
    fn without_tag(&self) -> Option<Addr> {
        let (base, _) = self.local.split_once('+')?;
        (!base.is_empty()).then(|| Addr {
            local: base.to_string(),
            domain: self.domain.clone(),
        })
    }
}

/// Accounts and aliases: an immutable snapshot, shared through [`DirectoryHandle`].
#[derive(Debug, Default)]
pub struct Directory {
    /// Configured domains first, in order (the first one qualifies a bare `postmaster`),
    /// then domains that only appear in the files.
    domains: Vec<String>,
    domain_set: HashSet<String>,
    /// Keyed by lowercased `local@domain`.
    accounts: HashMap<String, PasswordHash>,
    /// Keyed by lowercased `local@domain`, or `@domain` for catch-alls; targets as written.
    aliases: HashMap<String, Vec<String>>,
}

impl Directory {
    /// Reads both files; a missing file is empty. Malformed lines are skipped with a
    /// warning naming file and line, so one bad line does not lock every user out.
    ///
    /// Domains appearing in the files are served too, as docker-mailserver derives its
    /// virtual domains from them.
    pub fn load(
        domains: &[String],
        accounts: &Path,
        aliases: &Path,
    ) -> Result<Directory, DirectoryError> {
        let mut dir = Directory::default();
        for d in domains {
            dir.add_domain(&d.to_ascii_lowercase());
        }
        if let Some(text) = read_optional(accounts)? {
            dir.parse_accounts(&text, accounts);
        }
        if let Some(text) = read_optional(aliases)? {
            dir.parse_aliases(&text, aliases);
        }
        Ok(dir)
    }

    fn add_domain(&mut self, domain: &str) {
        if self.domain_set.insert(domain.to_string()) {
            self.domains.push(domain.to_string());
        }
    }

    fn parse_accounts(&mut self, text: &str, path: &Path) {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split('|');
            let address = fields.next().unwrap_or("");
            let Some(hash_field) = fields.next() else {
                warn!(file = %path.display(), line = n + 1, "account line without '|': skipped");
                continue;
            };
            let Some(addr) = Addr::parse(address).filter(|a| !a.local.is_empty()) else {
                warn!(file = %path.display(), line = n + 1, "invalid account address {address:?}: skipped");
                continue;
            };
            let hash = match PasswordHash::parse(hash_field.trim()) {
                Ok(h) => h,
                Err(why) => {
                    warn!(file = %path.display(), line = n + 1, account = %addr.key(), "{why}: account skipped");
                    continue;
                }
            };
            let key = addr.key();
            if self.accounts.contains_key(&key) {
                warn!(file = %path.display(), line = n + 1, account = %key, "duplicate account: first one kept");
                continue;
            }
            self.add_domain(&addr.domain);
            self.accounts.insert(key, hash);
        }
    }

    fn parse_aliases(&mut self, text: &str, path: &Path) {
        // Logical lines: a physical line starting with whitespace continues the previous.
        let mut entries: Vec<(usize, String)> = Vec::new();
        for (n, body) in text.lines().enumerate() {
            // As in Postfix tables, only whole lines are comments.
            let t = body.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if body.starts_with(char::is_whitespace) {
                if let Some((_, prev)) = entries.last_mut() {
                    prev.push(' ');
                    prev.push_str(body.trim());
                    continue;
                }
            }
            entries.push((n + 1, body.trim().to_string()));
        }
        for (line_no, entry) in entries {
            let mut parts = entry
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty());
            let source = parts.next().unwrap_or("");
            let targets: Vec<String> = parts
                .filter(|t| {
                    let ok = Addr::parse(t).is_some_and(|a| !a.local.is_empty());
                    if !ok {
                        warn!(file = %path.display(), line = line_no, "alias target {t:?} is not an address: ignored");
                    }
                    ok
                })
                .map(str::to_string)
                .collect();
            let key = match Addr::parse(source) {
                Some(a) if a.local.is_empty() => format!("@{}", a.domain),
                Some(a) => a.key(),
                None => {
                    warn!(file = %path.display(), line = line_no, "invalid alias {source:?}: skipped");
                    continue;
                }
            };
            if targets.is_empty() {
                warn!(file = %path.display(), line = line_no, alias = %key, "alias without targets: skipped");
                continue;
            }
            if self.aliases.contains_key(&key) {
                // Postfix's postmap keeps the first entry too.
                warn!(file = %path.display(), line = line_no, alias = %key, "duplicate alias: first one kept");
                continue;
            }
            let domain = key.rsplit_once('@').map_or("", |(_, d)| d).to_string();
            self.add_domain(&domain);
            self.aliases.insert(key, targets);
        }
    }

    /// Whether mail for `domain` is ours to deliver.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domain_set.contains(&domain.to_ascii_lowercase())
    }

    /// The number of accounts that can log in.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Parses a recipient; a bare `postmaster` (RFC 5321 §4.5.1) means postmaster of the
    /// first domain.
    fn parse_recipient(&self, address: &str) -> Option<Addr> {
        if address.trim().eq_ignore_ascii_case("postmaster") {
            return self.domains.first().map(|d| Addr {
                local: "postmaster".into(),
                domain: d.clone(),
            });
        }
        Addr::parse(address).filter(|a| !a.local.is_empty())
    }

    /// Resolves a recipient address through aliases to mailboxes and forwards.
    ///
    /// Lookup order for an address: an alias for it, an alias for it without `+tag`, the
    /// account (with or without `+tag`), and only then the domain's catch-all. Unlike
    /// Postfix, where a catch-all also captures mail for existing accounts unless each
    /// account is listed as an alias of itself, existing accounts always win; files written
    /// with that workaround resolve the same. An alias whose targets include itself also
    /// delivers to its own account, as in Postfix. Expansion stops at depth 8 and at loops.
    pub fn resolve(&self, address: &str) -> Resolution {
        let Some(addr) = self.parse_recipient(address) else {
            return Resolution::Unknown;
        };
        if !self.domain_set.contains(&addr.domain) {
            return Resolution::Foreign;
        }
        let mut out = Expansion::default();
        let mut path = Vec::new();
        self.expand(&addr, address, 0, &mut path, &mut out);
        if out.mailboxes.is_empty() && out.forward.is_empty() {
            Resolution::Unknown
        } else {
            Resolution::Local {
                mailboxes: out.mailboxes,
                forward: out.forward,
            }
        }
    }

    fn account_for(&self, addr: &Addr) -> Option<Addr> {
        if self.accounts.contains_key(&addr.key()) {
            return Some(addr.clone());
        }
        addr.without_tag()
            .filter(|a| self.accounts.contains_key(&a.key()))
    }

    fn alias_for(&self, addr: &Addr) -> Option<(String, &[String])> {
        let key = addr.key();
        if let Some(t) = self.aliases.get(&key) {
            return Some((key, t));
        }
        let base = addr.without_tag()?.key();
        self.aliases.get(&base).map(|t| (base, t.as_slice()))
    }

    fn expand(
        &self,
        addr: &Addr,
        written: &str,
        depth: usize,
        path: &mut Vec<String>,
        out: &mut Expansion,
    ) {
        if !self.domain_set.contains(&addr.domain) {
            out.add_forward(written);
            return;
        }
        let key = addr.key();
        if path.contains(&key) {
            // Self-reference (`a@d a@d, b@d`) delivers to the account; anything else is a loop.
            match self.account_for(addr) {
                Some(acct) => out.add_mailbox(acct),
                None => warn!(alias = %key, "alias loop: dropped"),
            }
            return;
        }
        if depth > MAX_ALIAS_DEPTH {
            warn!(alias = %key, "alias chain deeper than {MAX_ALIAS_DEPTH}: dropped");
            return;
        }
        let mark = path.len();
        let targets = if let Some((alias_key, targets)) = self.alias_for(addr) {
            path.push(key.clone());
            if alias_key != key {
                path.push(alias_key);
            }
            targets
        } else if let Some(acct) = self.account_for(addr) {
            out.add_mailbox(acct);
            return;
        } else if let Some(targets) = self.aliases.get(&format!("@{}", addr.domain)) {
            path.push(key.clone());
            targets
        } else {
            if depth > 0 {
                warn!(target = %key, "alias target has no account: dropped");
            }
            return;
        };
        for t in targets {
            if let Some(a) = Addr::parse(t) {
                self.expand(&a, t, depth + 1, path, out);
            }
        }
        path.truncate(mark);
    }

    /// Whether `user` (an account) may use `address` as its own: the account itself, or an
    /// address that resolves to it through aliases (what a sender check needs).
    pub fn owns_address(&self, user: &str, address: &str) -> bool {
        let Some(user) = Addr::parse(user) else {
            return false;
        };
        if !self.accounts.contains_key(&user.key()) {
            return false;
        }
        let Some(addr) = self.parse_recipient(address) else {
            return false;
        };
        if addr == user {
            return true;
        }
        match self.resolve(&addr.key()) {
            Resolution::Local { mailboxes, .. } => mailboxes
                .iter()
                .any(|m| m.local == user.local && m.domain == user.domain),
            _ => false,
        }
    }

    /// Checks a login. For an unknown user a dummy hash is still computed, so the time taken
    /// does not tell whether the account exists.
    pub fn verify_password(&self, user: &str, password: &str) -> bool {
        let account = Addr::parse(user).and_then(|a| self.accounts.get(&a.key()));
        match account {
            Some(hash) => hash.verify(password),
            None => {
                let dummy = parse_sha_crypt(DUMMY_HASH, true).expect("dummy hash is well-formed");
                let _ = dummy.verify(password);
                false
            }
        }
    }
}

#[derive(Default)]
struct Expansion {
    mailboxes: Vec<LocalMailbox>,
    forward: Vec<String>,
}

impl Expansion {
    fn add_mailbox(&mut self, a: Addr) {
        let m = LocalMailbox {
            local: a.local,
            domain: a.domain,
        };
        if !self.mailboxes.contains(&m) {
            self.mailboxes.push(m);
        }
    }

    /// Foreign addresses keep the local part as written (its case may matter to the
    /// receiving server) with the domain lowercased; duplicates compare case-insensitively.
    fn add_forward(&mut self, written: &str) {
        let written = written.trim();
        let (local, domain) = written.rsplit_once('@').unwrap_or((written, ""));
        let form = format!("{local}@{}", domain.to_ascii_lowercase());
        if !self.forward.iter().any(|f| f.eq_ignore_ascii_case(&form)) {
            self.forward.push(form);
        }
    }
}

fn read_optional(path: &Path) -> Result<Option<String>, DirectoryError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

/// What identifies a file's version: changed by any write or replacement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

/// A [`Directory`] that reloads itself when the account or alias file changes (checked at
/// most once per interval, one second by default), as docker-mailserver's change watcher
/// does, so `ironpost email add` takes effect without a restart.
///
/// `get` never blocks on a reload: one caller does the check while the others keep using
/// the current snapshot. A reload that fails keeps the previous snapshot and logs why.
pub struct DirectoryHandle {
    domains: Vec<String>,
    accounts: PathBuf,
    aliases: PathBuf,
    interval: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` at which the next check is due.
    next_check_ms: AtomicU64,
    current: RwLock<Arc<Directory>>,
    stamps: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

impl DirectoryHandle {
    /// Loads the files, checking for changes at most once per second.
    pub fn new(
        domains: &[String],
        accounts: &Path,
        aliases: &Path,
    ) -> Result<DirectoryHandle, DirectoryError> {
        DirectoryHandle::with_interval(domains, accounts, aliases, Duration::from_secs(1))
    }

    /// The handle for a configuration's domains and files.
    pub fn from_config(cfg: &crate::config::Config) -> Result<DirectoryHandle, DirectoryError> {
        DirectoryHandle::new(&cfg.domains, &cfg.accounts_file, &cfg.aliases_file)
    }

    /// As [`DirectoryHandle::new`], with the check interval given.
    pub fn with_interval(
        domains: &[String],
        accounts: &Path,
        aliases: &Path,
        interval: Duration,
    ) -> Result<DirectoryHandle, DirectoryError> {
        let stamps = (stamp(accounts), stamp(aliases));
        let dir = Directory::load(domains, accounts, aliases)?;
        info!(
            accounts = dir.account_count(),
            aliases = dir.aliases.len(),
            "directory loaded"
        );
        let epoch = Instant::now();
        Ok(DirectoryHandle {
            domains: domains.to_vec(),
            accounts: accounts.to_path_buf(),
            aliases: aliases.to_path_buf(),
            interval,
            epoch,
            next_check_ms: AtomicU64::new(interval.as_millis() as u64),
            current: RwLock::new(Arc::new(dir)),
            stamps: Mutex::new(stamps),
        })
    }

    /// The current snapshot, reloaded first if a check is due and a file changed.
    pub fn get(&self) -> Arc<Directory> {
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        if now_ms >= self.next_check_ms.load(Ordering::Relaxed) {
            if let Ok(mut stamps) = self.stamps.try_lock() {
                self.next_check_ms
                    .store(now_ms + self.interval.as_millis() as u64, Ordering::Relaxed);
                self.check(&mut stamps);
            }
        }
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reloads now if a file changed since the last load; for a SIGHUP, say.
    pub fn reload_if_changed(&self) {
        let mut stamps = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        self.check(&mut stamps);
    }

    fn check(&self, stamps: &mut (Option<Stamp>, Option<Stamp>)) {
        let now = (stamp(&self.accounts), stamp(&self.aliases));
        if now == *stamps {
            return;
        }
        match Directory::load(&self.domains, &self.accounts, &self.aliases) {
            Ok(dir) => {
                info!(
                    accounts = dir.account_count(),
                    aliases = dir.aliases.len(),
                    "directory reloaded"
                );
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(dir);
                *stamps = now;
            }
            Err(e) => warn!("directory reload failed, keeping the previous one: {e}"),
        }
    }
}

// ---- CLI support: editing postfix-accounts.cf ----

/// Checks an address for the accounts file: `local@domain`, no separators or spaces.
fn check_account_address(address: &str) -> Result<Addr, DirectoryError> {
    let invalid = |reason| DirectoryError::InvalidAddress {
        address: address.to_string(),
        reason,
    };
    if address.contains(['|', '#', ',']) || address.contains(char::is_whitespace) {
        return Err(invalid("contains '|', '#', ',' or whitespace"));
    }
    let a = Addr::parse(address).ok_or_else(|| invalid("expected local@domain"))?;
    if a.local.is_empty() || a.domain.is_empty() || a.local.contains('@') {
        return Err(invalid("expected local@domain"));
    }
    Ok(a)
}

/// The lowercased address of an account line, or None for comments and blanks.
fn line_address(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    Some(t.split('|').next().unwrap_or("").trim().to_lowercase())
}

/// Adds an account, or replaces the password of an existing one (keeping any further
/// fields of its line), with a `{SHA512-CRYPT}` hash; other lines are kept as they are.
pub fn add_account(path: &Path, address: &str, password: &str) -> Result<(), DirectoryError> {
    let addr = check_account_address(address)?;
    let hash = sha_crypt::sha512_simple(password, &sha_crypt::Sha512Params::default())
        .map_err(|e| DirectoryError::Hash(format!("{e:?}")))?;
    let new_field = format!("{{SHA512-CRYPT}}{hash}");
    let text = read_optional(path)?.unwrap_or_default();
    let key = addr.key();
    let mut out = String::with_capacity(text.len() + 160);
    let mut replaced = false;
    for line in text.lines() {
        if !replaced && line_address(line).as_deref() == Some(key.as_str()) {
            let mut fields: Vec<&str> = line.trim().split('|').collect();
            if fields.len() < 2 {
                fields.push("");
            }
            fields[1] = &new_field;
            out.push_str(&fields.join("|"));
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&format!("{key}|{new_field}\n"));
    }
    write_atomically(path, out.as_bytes())
}

/// Removes an account's line; Ok(false) if there was none.
pub fn delete_account(path: &Path, address: &str) -> Result<bool, DirectoryError> {
    let Some(text) = read_optional(path)? else {
        return Ok(false);
    };
    let key = address.trim().to_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut removed = false;
    for line in text.lines() {
        if line_address(line).as_deref() == Some(key.as_str()) {
            removed = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if removed {
        write_atomically(path, out.as_bytes())?;
    }
    Ok(removed)
}

/// The account addresses in the file, in file order (a missing file lists none).
pub fn list_accounts(path: &Path) -> Result<Vec<String>, DirectoryError> {
    let text = read_optional(path)?.unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(line_address)
        .filter(|a| !a.is_empty())
        .collect())
}

/// Writes via a temporary file in the same directory, fsync, rename and directory fsync,
/// so a reader (or a crash) sees the old file or the new one, never half of one. An
/// existing file's permissions are kept; a new one is 0600, as it holds password hashes.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), DirectoryError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .map_or("accounts".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mode = fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            use std::sync::atomic::AtomicUsize;
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "ironpost-dir-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// `openssl passwd -6 -salt saltsalt secret`
    const OPENSSL_SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    /// `openssl passwd -5 -salt saltsalt secret`
    const OPENSSL_SHA256: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";

    fn domains() -> Vec<String> {
        vec!["example.test".into(), "other.test".into()]
    }

    fn directory(accounts: &str, aliases: &str) -> Directory {
        let t = TempDir::new();
        fs::write(t.path("a.cf"), accounts).unwrap();
        fs::write(t.path("v.cf"), aliases).unwrap();
        Directory::load(&domains(), &t.path("a.cf"), &t.path("v.cf")).unwrap()
    }

    fn sha512(pw: &str) -> String {
        let h = sha_crypt::sha512_simple(pw, &sha_crypt::Sha512Params::default()).unwrap();
        format!("{{SHA512-CRYPT}}{h}")
    }

    fn mb(a: &str) -> LocalMailbox {
        let (l, d) = a.split_once('@').unwrap();
        LocalMailbox {
            local: l.into(),
            domain: d.into(),
        }
    }

    fn local(mailboxes: &[&str], forward: &[&str]) -> Resolution {
        Resolution::Local {
            mailboxes: mailboxes.iter().map(|a| mb(a)).collect(),
            forward: forward.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn known_sha512_crypt_hash() {
        let d = directory(
            &format!("user@example.test|{{SHA512-CRYPT}}{OPENSSL_SHA512}\n"),
            "",
        );
        assert!(d.verify_password("user@example.test", "secret"));
        assert!(!d.verify_password("user@example.test", "Secret"));
        assert!(!d.verify_password("user@example.test", ""));
    }

    #[test]
    fn every_scheme_good_and_bad() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let argon_id = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 1, 1, None).unwrap(),
        )
        .hash_password(b"pw-argon2id", &salt)
        .unwrap()
        .to_string();
        let argon_i = argon2::Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x13,
            argon2::Params::new(1024, 2, 1, None).unwrap(),
        )
        .hash_password(b"pw-argon2i", &salt)
        .unwrap()
        .to_string();
        let bcrypt_2b = bcrypt::hash("pw-bcrypt", 4).unwrap();
        let bcrypt_2y = bcrypt::hash_with_result("pw-bcrypt-y", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let sha256 =
            sha_crypt::sha256_simple("pw-sha256", &sha_crypt::Sha256Params::new(2000).unwrap())
                .unwrap();
        let accounts = format!(
            "a@example.test|{}\n\
             b@example.test|{{SHA256-CRYPT}}{sha256}\n\
             c@example.test|{{BLF-CRYPT}}{bcrypt_2b}\n\
             d@example.test|{{BLF-CRYPT}}{bcrypt_2y}\n\
             e@example.test|{{ARGON2ID}}{argon_id}\n\
             f@example.test|{{ARGON2I}}{argon_i}\n\
             g@example.test|{{SHA256-CRYPT}}{OPENSSL_SHA256}|extra|fields\n\
             h@example.test|{{CRYPT}}{OPENSSL_SHA512}\n\
             i@example.test|{OPENSSL_SHA512}\n",
            sha512("pw-sha512")
        );
        let d = directory(&accounts, "");
        assert_eq!(d.account_count(), 9);
        for (user, pw) in [
            ("a", "pw-sha512"),
            ("b", "pw-sha256"),
            ("c", "pw-bcrypt"),
            ("d", "pw-bcrypt-y"),
            ("e", "pw-argon2id"),
            ("f", "pw-argon2i"),
            ("g", "secret"),
            ("h", "secret"),
            ("i", "secret"),
        ] {
            let user = format!("{user}@example.test");
            assert!(d.verify_password(&user, pw), "{user} good");
            assert!(!d.verify_password(&user, "wrong"), "{user} bad");
        }
    }

    #[test]
    fn unknown_user_and_unknown_scheme() {
        let d = directory(
            &format!(
                "# comment\n\n  \nplain@example.test|{{PLAIN}}secret\n\
                 md5@example.test|{{MD5-CRYPT}}$1$abc$def\n\
                 broken@example.test|{{SHA512-CRYPT}}$6$short\n\
                 nopipe@example.test\n\
                 ok@example.test|{{SHA512-CRYPT}}{OPENSSL_SHA512}\n"
            ),
            "",
        );
        assert_eq!(d.account_count(), 1);
        assert!(!d.verify_password("plain@example.test", "secret"));
        assert_eq!(d.resolve("plain@example.test"), Resolution::Unknown);
        assert!(!d.verify_password("nobody@example.test", "secret"));
        assert!(!d.verify_password("not an address", "secret"));
        assert!(d.verify_password("ok@example.test", "secret"));
        // The dummy hash itself is well-formed, so unknown users cost a real hash.
        assert!(parse_sha_crypt(DUMMY_HASH, true).is_some());
        // Debug output names schemes, never hashes.
        assert!(!format!("{d:?}").contains("TVLlQ"));
    }

    #[test]
    fn case_insensitive() {
        let d = directory(
            &format!("User@Example.TEST|{{SHA512-CRYPT}}{OPENSSL_SHA512}\n"),
            "Info@EXAMPLE.test user@example.test\n",
        );
        assert!(d.verify_password("USER@example.Test", "secret"));
        assert_eq!(
            d.resolve("uSeR@eXample.test"),
            local(&["user@example.test"], &[])
        );
        assert_eq!(
            d.resolve("INFO@example.TEST"),
            local(&["user@example.test"], &[])
        );
        assert!(d.is_local_domain("EXAMPLE.test"));
        assert!(!d.is_local_domain("example.com"));
    }

    #[test]
    fn alias_expansion() {
        let accounts = format!(
            "alice@example.test|{}\nbob@example.test|{}\ncarol@other.test|{}\n",
            sha512("a"),
            sha512("b"),
            sha512("c")
        );
        let aliases = "\
# chain: team -> devs -> alice, bob
team@example.test devs@example.test, carol@other.test
devs@example.test alice@example.test,bob@example.test  alice@example.test
# loop
ping@example.test pong@example.test
pong@example.test ping@example.test
# loop that passes through a real account
l1@example.test l2@example.test
l2@example.test l1@example.test, bob@example.test
# foreign target, with continuation line and dedup
fwd@example.test Someone@Elsewhere.ORG,
    someone@elsewhere.org alice@example.test
# self-reference keeps a copy
bob@example.test bob@example.test, boss@elsewhere.org
# dangling target
dangling@example.test nobody@example.test
";
        let d = directory(&accounts, aliases);
        assert_eq!(
            d.resolve("team@example.test"),
            local(
                &["alice@example.test", "bob@example.test", "carol@other.test"],
                &["boss@elsewhere.org"]
            )
        );
        assert_eq!(d.resolve("ping@example.test"), Resolution::Unknown);
        assert_eq!(
            d.resolve("l1@example.test"),
            local(&["bob@example.test"], &["boss@elsewhere.org"])
        );
        assert_eq!(
            d.resolve("fwd@example.test"),
            local(&["alice@example.test"], &["Someone@elsewhere.org"])
        );
        assert_eq!(
            d.resolve("bob@example.test"),
            local(&["bob@example.test"], &["boss@elsewhere.org"])
        );
        assert_eq!(d.resolve("dangling@example.test"), Resolution::Unknown);
        assert_eq!(
            d.resolve("carol@other.test"),
            local(&["carol@other.test"], &[])
        );
        assert_eq!(d.resolve("someone@elsewhere.org"), Resolution::Foreign);
        assert_eq!(d.resolve("nobody@example.test"), Resolution::Unknown);
        assert_eq!(d.resolve("not-an-address"), Resolution::Unknown);
    }

    #[test]
    fn depth_limit() {
        let accounts = format!("end@example.test|{}\n", sha512("x"));
        let mut aliases = String::new();
        for i in 0..12 {
            aliases.push_str(&format!("a{i}@example.test a{}@example.test\n", i + 1));
        }
        aliases.push_str("a12@example.test end@example.test\n");
        let d = directory(&accounts, &aliases);
        assert_eq!(
            d.resolve("a12@example.test"),
            local(&["end@example.test"], &[])
        );
        assert_eq!(
            d.resolve("a5@example.test"),
            local(&["end@example.test"], &[])
        );
        assert_eq!(d.resolve("a0@example.test"), Resolution::Unknown);
    }

    #[test]
    fn catch_all_and_tags() {
        let accounts = format!(
            "alice@example.test|{}\nbob@example.test|{}\n",
            sha512("a"),
            sha512("b")
        );
        let aliases = "@example.test bob@example.test\nsales@example.test alice@example.test\n";
        let d = directory(&accounts, aliases);
        assert_eq!(
            d.resolve("whatever@example.test"),
            local(&["bob@example.test"], &[])
        );
        // Existing accounts and aliases win over the catch-all.
        assert_eq!(
            d.resolve("alice@example.test"),
            local(&["alice@example.test"], &[])
        );
        assert_eq!(
            d.resolve("sales@example.test"),
            local(&["alice@example.test"], &[])
        );
        // user+tag falls back to user, for accounts and aliases alike.
        assert_eq!(
            d.resolve("alice+news@example.test"),
            local(&["alice@example.test"], &[])
        );
        assert_eq!(
            d.resolve("sales+x@example.test"),
            local(&["alice@example.test"], &[])
        );
        // No catch-all in other.test.
        assert_eq!(d.resolve("x@other.test"), Resolution::Unknown);
        // Catch-all domains become local even if not configured.
        let d = directory(&accounts, "@extra.test alice@example.test\n");
        assert!(d.is_local_domain("extra.test"));
        assert_eq!(
            d.resolve("x@extra.test"),
            local(&["alice@example.test"], &[])
        );
    }

    #[test]
    fn postmaster() {
        let accounts = format!("admin@example.test|{}\n", sha512("a"));
        let d = directory(&accounts, "postmaster@example.test admin@example.test\n");
        assert_eq!(d.resolve("postmaster"), local(&["admin@example.test"], &[]));
        assert_eq!(d.resolve("PostMaster"), local(&["admin@example.test"], &[]));
        assert_eq!(d.resolve("postmaster@other.test"), Resolution::Unknown);
    }

    #[test]
    fn owns_address() {
        let accounts = format!(
            "alice@example.test|{}\nbob@example.test|{}\n",
            sha512("a"),
            sha512("b")
        );
        let aliases = "sales@example.test alice@example.test, bob@example.test\n\
                       info@example.test bob@example.test\n@other.test alice@example.test\n";
        let d = directory(&accounts, aliases);
        assert!(d.owns_address("alice@example.test", "ALICE@example.test"));
        assert!(d.owns_address("alice@example.test", "sales@example.test"));
        assert!(d.owns_address("bob@example.test", "sales@example.test"));
        assert!(!d.owns_address("alice@example.test", "info@example.test"));
        assert!(!d.owns_address("alice@example.test", "bob@example.test"));
        assert!(d.owns_address("alice@example.test", "anything@other.test"));
        assert!(!d.owns_address("alice@example.test", "x@foreign.org"));
        assert!(!d.owns_address("nobody@example.test", "nobody@example.test"));
    }

    #[test]
    fn missing_files_are_empty() {
        let t = TempDir::new();
        let d = Directory::load(&domains(), &t.path("none.cf"), &t.path("none2.cf")).unwrap();
        assert_eq!(d.account_count(), 0);
        assert_eq!(d.resolve("x@example.test"), Resolution::Unknown);
        assert!(list_accounts(&t.path("none.cf")).unwrap().is_empty());
        assert!(!delete_account(&t.path("none.cf"), "x@example.test").unwrap());
    }

    #[test]
    fn add_delete_list_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let t = TempDir::new();
        let path = t.path("sub/postfix-accounts.cf");
        add_account(&path, "Alice@Example.test", "pw1").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("alice@example.test|{SHA512-CRYPT}$6$"),
            "{text}"
        );

        // Keep foreign lines and comments as they are.
        let mut text = fs::read_to_string(&path).unwrap();
        text.insert_str(0, "# managed by hand\n");
        text.push_str("bob@example.test|{BLF-CRYPT}$2y$05$whatever|userdb_quota=1G\n");
        fs::write(&path, &text).unwrap();
        add_account(&path, "carol@example.test", "pw3").unwrap();
        add_account(&path, "ALICE@example.test", "pw1-new").unwrap();
        assert_eq!(
            list_accounts(&path).unwrap(),
            vec![
                "alice@example.test",
                "bob@example.test",
                "carol@example.test"
            ]
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# managed by hand\nalice@example.test|"));
        assert!(text.contains("bob@example.test|{BLF-CRYPT}$2y$05$whatever|userdb_quota=1G\n"));

        let d = Directory::load(&domains(), &path, &t.path("v.cf")).unwrap();
        assert!(d.verify_password("alice@example.test", "pw1-new"));
        assert!(!d.verify_password("alice@example.test", "pw1"));
        assert!(d.verify_password("carol@example.test", "pw3"));

        // Replacing bob's password keeps his extra field.
        add_account(&path, "bob@example.test", "pw2").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let bob = text.lines().find(|l| l.starts_with("bob@")).unwrap();
        assert!(
            bob.starts_with("bob@example.test|{SHA512-CRYPT}$6$")
                && bob.ends_with("|userdb_quota=1G")
        );

        assert!(delete_account(&path, "Carol@example.test").unwrap());
        assert!(!delete_account(&path, "carol@example.test").unwrap());
        assert_eq!(
            list_accounts(&path).unwrap(),
            vec!["alice@example.test", "bob@example.test"]
        );
        assert!(add_account(&path, "no-at-sign", "x").is_err());
        assert!(add_account(&path, "a|b@example.test", "x").is_err());
        assert!(add_account(&path, "@example.test", "x").is_err());
        // No temporary files left behind.
        assert_eq!(fs::read_dir(t.path("sub")).unwrap().count(), 1);
    }

    #[test]
    fn reload_on_change() {
        let t = TempDir::new();
        let (acc, ali) = (t.path("a.cf"), t.path("v.cf"));
        let h = DirectoryHandle::with_interval(&domains(), &acc, &ali, Duration::ZERO).unwrap();
        assert_eq!(h.get().account_count(), 0);
        add_account(&acc, "alice@example.test", "pw").unwrap();
        let d = h.get();
        assert_eq!(d.account_count(), 1);
        assert!(d.verify_password("alice@example.test", "pw"));
        fs::write(&ali, "info@example.test alice@example.test\n").unwrap();
        assert_eq!(
            h.get().resolve("info@example.test"),
            local(&["alice@example.test"], &[])
        );
        // Unchanged files: the same snapshot is handed out.
        assert!(Arc::ptr_eq(&h.get(), &h.get()));

        // Between checks a change is not noticed, unless a reload is asked for.
        let h = DirectoryHandle::with_interval(&domains(), &acc, &ali, Duration::from_secs(3600))
            .unwrap();
        add_account(&acc, "bob@example.test", "pw").unwrap();
        assert_eq!(h.get().account_count(), 1);
        h.reload_if_changed();
        assert_eq!(h.get().account_count(), 2);
    }
}
