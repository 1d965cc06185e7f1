//! Credentials for relay hosts, read from docker-mailserver's `postfix-sasl-password.cf`:
//! one `next-hop user:password` per line, the next hop written as in `relayhost`
//! (`[smtp.example.com]:587`, or a bare host name, which matches any port). Lines keyed by
//! `@domain` (Postfix's sender-dependent credentials) are ignored.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use ironpost_core::smtp::client::Credentials;

use super::route::NextHop;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    hop: NextHop,
    /// A bare name (no brackets, no port): matches the host on any port.
    any_port: bool,
    username: String,
    password: String,
}

/// The parsed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaslMap {
    entries: Vec<Entry>,
}

impl SaslMap {
    /// Parses the file's text; bad lines are reported by number and skipped.
    pub fn parse(text: &str) -> (SaslMap, Vec<String>) {
        let mut entries = Vec::new();
        let mut problems = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(char::is_whitespace) else {
                problems.push(format!("line {}: no credentials after the host", n + 1));
                continue;
            };
            if key.starts_with('@') {
                continue;
            }
            let Some((user, pass)) = value.trim().split_once(':') else {
                problems.push(format!("line {}: credentials are not user:password", n + 1));
                continue;
            };
            let hop = match NextHop::parse(key) {
                Ok(h) => h,
                Err(e) => {
                    problems.push(format!("line {}: {e}", n + 1));
                    continue;
                }
            };
            entries.push(Entry {
                any_port: !key.contains(['[', ':']),
                hop,
                username: user.to_string(),
                password: pass.to_string(),
            });
        }
        (SaslMap { entries }, problems)
    }

    /// The credentials for a next hop: an entry naming it exactly, else one naming its host
    /// without a port.
    pub fn lookup(&self, hop: &NextHop) -> Option<Credentials> {
        let exact = self.entries.iter().find(|e| e.hop == *hop);
        let by_name = || {
            self.entries
                .iter()
                .find(|e| e.any_port && e.hop.name() == hop.name())
        };
        exact.or_else(by_name).map(|e| Credentials {
            username: e.username.clone(),
            password: e.password.clone(),
            // Never over cleartext: a relay that offers no STARTTLS gets no password.
            allow_cleartext: false,
        })
    }
}

/// The file, re-read when it changes.
pub struct SaslFile {
    path: PathBuf,
    cached: Mutex<(Option<(SystemTime, u64)>, SaslMap)>,
}

impl SaslFile {
    pub fn new(path: &Path) -> SaslFile {
        SaslFile {
            path: path.to_path_buf(),
            cached: Mutex::new((None, SaslMap::default())),
        }
    }

    pub fn lookup(&self, hop: &NextHop) -> Option<Credentials> {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != stamp {
            let text = std::fs::read_to_string(&self.path).unwrap_or_default();
            let (map, problems) = SaslMap::parse(&text);
            for p in problems {
                tracing::warn!(file = %self.path.display(), "{p}");
            }
            *cached = (stamp, map);
        }
        cached.1.lookup(hop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_mailserver_lines() {
        let text = "# relay credentials\n\
                    [smtp.example.com]:587 relay-user:pa:ss word\n\
                    mail.isp.test  isp-user:secret\n\
                    @example.org sender-user:x\n\
                    \n\
                    [127.0.0.1]:2525 local:pw\n\
                    bad-line-without-credentials\n\
                    [broken user:pw\n\
                    host.test nocolon\n";
        let (map, problems) = SaslMap::parse(text);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("line 7:"), "{problems:?}");

        let c = map
            .lookup(&NextHop::parse("[smtp.example.com]:587").unwrap())
            .unwrap();
        assert_eq!(c.username, "relay-user");
        assert_eq!(c.password, "pa:ss word");
        assert!(!c.allow_cleartext);
        // Exact entries need the same port.
        assert_eq!(
            map.lookup(&NextHop::parse("[smtp.example.com]:25").unwrap()),
            None
        );
        // A bare name matches its host on any port, bracketed or not.
        for hop in ["[mail.isp.test]:465", "mail.isp.test", "[mail.isp.test]"] {
            let c = map.lookup(&NextHop::parse(hop).unwrap()).unwrap();
            assert_eq!(c.username, "isp-user", "{hop}");
        }
        assert_eq!(
            map.lookup(&NextHop::parse("127.0.0.1:2525").unwrap())
                .unwrap()
                .username,
            "local"
        );
        assert_eq!(map.lookup(&NextHop::parse("example.org").unwrap()), None);
    }

    #[test]
    fn debug_output_hides_the_password() {
        let (map, _) = SaslMap::parse("[h.test]:587 u:hunter2\n");
        let c = map
            .lookup(&NextHop::parse("[h.test]:587").unwrap())
            .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn file_is_reread_when_it_changes() {
        let dir = crate::maildir::test_support::TempDir::new();
        let path = dir.path().join("sasl.cf");
        let f = SaslFile::new(&path);
        let hop = NextHop::parse("[r.test]:587").unwrap();
        assert_eq!(f.lookup(&hop), None);
        std::fs::write(&path, "[r.test]:587 a:b\n").unwrap();
        assert_eq!(f.lookup(&hop).unwrap().username, "a");
        std::fs::write(&path, "[r.test]:587 longer-name:b\n").unwrap();
        assert_eq!(f.lookup(&hop).unwrap().username, "longer-name");
    }
}
