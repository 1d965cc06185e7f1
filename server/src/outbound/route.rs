//! Where a recipient's mail goes: the next hop from the static route table, the relay host,
//! or the recipient's domain (MX lookup), and the hosts that next hop stands for.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::dns::{DnsError, Resolver};
use super::retry::Failure;

/// SMTP's port.
pub const SMTP_PORT: u16 = 25;

/// Addresses tried for one delivery attempt, over all MX hosts: enough to get past a dead
/// primary, not so many that one attempt takes forever.
pub const MAX_ADDRESSES: usize = 5;

/// A next hop as written in Postfix's syntax: `[host]:port` (or an IP address) names the
/// host to connect to; an unbracketed name is a domain whose MX records are looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// Connect to this host (a name is resolved with A/AAAA, no MX lookup).
    Host { host: String, port: u16 },
    /// Look up the domain's MX hosts (RFC 5321 5.1), then A/AAAA.
    Mx { domain: String, port: u16 },
}

impl NextHop {
    /// Parses `[host]`, `[host]:port`, `1.2.3.4`, `1.2.3.4:port`, `[::1]:port`, `name`,
    /// `name:port`, optionally prefixed `smtp:`.
    pub fn parse(text: &str) -> Result<NextHop, String> {
        let t = text.trim();
        let t = t.strip_prefix("smtp:").unwrap_or(t);
        let bad = |why: &str| {
            format!("{text:?} is not a next hop ({why}); e.g. \"[mx.example.net]:25\", \"127.0.0.1:2525\", \"example.net\"")
        };
        if t.is_empty() {
            return Err(bad("empty"));
        }
        if let Some(rest) = t.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| bad("no closing ]"))?;
            let port = match after {
                "" => SMTP_PORT,
                p => parse_port(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?)
                    .ok_or_else(|| bad("bad port"))?,
            };
            if host.parse::<IpAddr>().is_err() && !valid_name(host) {
                return Err(bad("bad host name"));
            }
            return Ok(NextHop::Host {
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        if let Ok(a) = t.parse::<SocketAddr>() {
            return Ok(NextHop::Host {
                host: a.ip().to_string(),
                port: a.port(),
            });
        }
        if let Ok(ip) = t.parse::<IpAddr>() {
            return Ok(NextHop::Host {
                host: ip.to_string(),
                port: SMTP_PORT,
            });
        }
        let (name, port) = match t.rsplit_once(':') {
            Some((n, p)) => (n, parse_port(p).ok_or_else(|| bad("bad port"))?),
            None => (t, SMTP_PORT),
        };
        if !valid_name(name) {
            return Err(bad("bad domain name"));
        }
        Ok(NextHop::Mx {
            domain: name.to_ascii_lowercase(),
            port,
        })
    }

    /// Mail for a domain with no route and no relay host: its MX hosts on port 25.
    pub fn domain(domain: &str) -> NextHop {
        NextHop::Mx {
            domain: domain.to_ascii_lowercase(),
            port: SMTP_PORT,
        }
    }

    /// The name in the SASL password file and in logs: `[host]:port` or `domain[:port]`.
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn port(&self) -> u16 {
        match self {
            NextHop::Host { port, .. } | NextHop::Mx { port, .. } => *port,
        }
    }

    /// The host or domain without port or brackets.
    pub fn name(&self) -> &str {
        match self {
            NextHop::Host { host, .. } => host,
            NextHop::Mx { domain, .. } => domain,
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NextHop::Host { host, port } => write!(f, "[{host}]:{port}"),
            NextHop::Mx { domain, port } if *port == SMTP_PORT => f.write_str(domain),
            NextHop::Mx { domain, port } => write!(f, "{domain}:{port}"),
        }
    }
}

fn parse_port(p: &str) -> Option<u16> {
    p.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Letters, digits, hyphens and dots, no empty label (a trailing dot is allowed).
fn valid_name(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The routing decision for one recipient domain: the static routes first, then the relay
/// host, then the domain itself.
#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<(String, NextHop)>,
    relayhost: Option<NextHop>,
}

impl Router {
    pub fn new(routes: Vec<(String, NextHop)>, relayhost: Option<NextHop>) -> Router {
        Router { routes, relayhost }
    }

    /// The next hop for mail to `domain` (case does not matter).
    pub fn next_hop(&self, domain: &str) -> NextHop {
        let d = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some((_, hop)) = self.routes.iter().find(|(r, _)| *r == d) {
            return hop.clone();
        }
        if let Some(hop) = &self.relayhost {
            return hop.clone();
        }
        // An address literal (`user@[192.0.2.1]`) names the host itself.
        if let Some(ip) = d
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(|r| r.strip_prefix("ipv6:").unwrap_or(r))
        {
            return NextHop::Host {
                host: ip.to_string(),
                port: SMTP_PORT,
            };
        }
        NextHop::domain(&d)
    }
}

/// One host to try: its name (for TLS and logs) and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: String,
    pub addr: SocketAddr,
}

impl fmt::Display for Candidate {
    /// Postfix's `host[ip]:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }
}

/// The addresses to try for a next hop, best first (at most [`MAX_ADDRESSES`]): MX hosts by
/// preference (equal preferences in the order the resolver gave), each host's IPv4
/// addresses before its IPv6 ones. A domain without MX records is its own MX (RFC 5321
/// 5.1); a domain with a null MX (RFC 7505) takes no mail.
pub fn candidates(hop: &NextHop, dns: &Resolver) -> Result<Vec<Candidate>, Failure> {
    let port = hop.port();
    let hosts: Vec<String> = match hop {
        NextHop::Host { host, .. } => {
            if let Ok(ip) = host.parse::<IpAddr>() {
                return Ok(vec![Candidate {
                    host: host.clone(),
                    addr: SocketAddr::new(ip, port),
                }]);
            }
            vec![host.clone()]
        }
        NextHop::Mx { domain, .. } => match dns.mx(domain) {
            Ok(mut mx) if !mx.is_empty() => {
                mx.sort_by_key(|(pref, _)| *pref);
                if mx.len() == 1 && (mx[0].1.is_empty() || mx[0].1 == ".") {
                    return Err(Failure::permanent(
                        "5.1.10",
                        format!("Domain {domain} does not accept mail (null MX)"),
                    ));
                }
                mx.into_iter()
                    .map(|(_, h)| h)
                    .filter(|h| !h.is_empty() && h != ".")
                    .collect()
            }
            // No MX: the domain itself, as if it had an MX of preference 0.
            Ok(_) => vec![domain.clone()],
            Err(DnsError::NotFound) => {
                return Err(Failure::permanent(
                    "5.4.4",
                    format!("Host or domain name not found. Name service error for name={domain} type=MX: Host not found"),
                ))
            }
            Err(e) => {
                return Err(Failure::temporary(
                    "4.4.3",
                    format!("Name service error for name={domain} type=MX: {e}"),
                ))
            }
        },
    };

    let mut out = Vec::new();
    let mut last_error = None;
    for host in hosts {
        if out.len() >= MAX_ADDRESSES {
            break;
        }
        match dns.addresses(&host) {
            Ok(ips) => {
                for ip in ips {
                    if out.len() < MAX_ADDRESSES {
                        out.push(Candidate {
                            host: host.clone(),
                            addr: SocketAddr::new(ip, port),
                        });
                    }
                }
            }
            Err(e) => last_error = Some((host, e)),
        }
    }
    if out.is_empty() {
        return Err(match last_error {
            Some((host, DnsError::NotFound)) if matches!(hop, NextHop::Host { .. }) => {
                Failure::permanent(
                    "5.4.4",
                    format!("Host or domain name not found. Name service error for name={host} type=A: Host not found"),
                )
            }
            Some((host, e)) => Failure::temporary(
                "4.4.3",
                format!("Name service error for name={host} type=A: {e}"),
            ),
            None => Failure::temporary("4.4.3", format!("No address found for {hop}")),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(h: &str, port: u16) -> NextHop {
        NextHop::Host {
            host: h.into(),
            port,
        }
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            NextHop::parse("127.0.0.1:2626").unwrap(),
            host("127.0.0.1", 2626)
        );
        assert_eq!(NextHop::parse("127.0.0.1").unwrap(), host("127.0.0.1", 25));
        assert_eq!(NextHop::parse("[::1]:2525").unwrap(), host("::1", 2525));
        assert_eq!(NextHop::parse("::1").unwrap(), host("::1", 25));
        assert_eq!(
            NextHop::parse("[Smtp.Example.COM]:587").unwrap(),
            host("smtp.example.com", 587)
        );
        assert_eq!(
            NextHop::parse("[relay.test]").unwrap(),
            host("relay.test", 25)
        );
        assert_eq!(
            NextHop::parse("smtp:[relay.test]:2525").unwrap(),
            host("relay.test", 2525)
        );
        assert_eq!(
            NextHop::parse("example.net").unwrap(),
            NextHop::Mx {
                domain: "example.net".into(),
                port: 25
            }
        );
        assert_eq!(
            NextHop::parse("example.net:2525").unwrap(),
            NextHop::Mx {
                domain: "example.net".into(),
                port: 2525
            }
        );
        for bad in [
            "",
            "[x",
            "[x]y",
            "[x]:0",
            "a b",
            "x:y",
            "x:70000",
            "[bad name]:25",
            "a..b",
        ] {
            assert!(NextHop::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "[127.0.0.1]:2626",
            "[::1]:25",
            "[relay.test]:587",
            "example.net",
            "example.net:2525",
        ] {
            let h = NextHop::parse(s).unwrap();
            assert_eq!(h.to_string(), s);
            assert_eq!(NextHop::parse(&h.to_string()).unwrap(), h);
        }
    }

    #[test]
    fn routes_then_relayhost_then_domain() {
        let r = Router::new(vec![("example.net".into(), host("127.0.0.1", 2626))], None);
        assert_eq!(r.next_hop("Example.NET"), host("127.0.0.1", 2626));
        assert_eq!(r.next_hop("other.org"), NextHop::domain("other.org"));
        assert_eq!(r.next_hop("[192.0.2.7]"), host("192.0.2.7", 25));
        assert_eq!(r.next_hop("[IPv6:2001:db8::1]"), host("2001:db8::1", 25));

        let smart = host("smarthost.test", 587);
        let r = Router::new(
            vec![("example.net".into(), host("127.0.0.1", 2626))],
            Some(smart.clone()),
        );
        assert_eq!(r.next_hop("example.net"), host("127.0.0.1", 2626));
        assert_eq!(r.next_hop("other.org"), smart);
        // A subdomain is not the routed domain.
        assert_eq!(r.next_hop("sub.example.net"), smart);
    }

    #[test]
    fn ip_next_hop_needs_no_dns() {
        // A resolver that cannot answer: an IP literal never asks it.
        let dns = Resolver::new(vec![], std::time::Duration::from_millis(10));
        let c = candidates(&host("127.0.0.1", 2626), &dns).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].addr, "127.0.0.1:2626".parse().unwrap());
        assert_eq!(c[0].to_string(), "127.0.0.1[127.0.0.1]:2626");
    }

    mod with_dns {
        use super::super::*;
        use crate::outbound::dns::fake::{Answer, FakeDns};
        use hickory_proto::rr::RecordType;

        fn a(ips: &[[u8; 4]]) -> Answer {
            Answer::A(ips.iter().map(|&o| o.into()).collect())
        }

        fn addrs(c: &[Candidate]) -> Vec<String> {
            c.iter().map(|c| c.to_string()).collect()
        }

        #[test]
        fn mx_hosts_by_preference_ipv4_first() {
            let dns = FakeDns::start(vec![
                (
                    ("example.net", RecordType::MX),
                    Answer::Mx(vec![
                        (30, "c.example.net"),
                        (10, "a.example.net"),
                        (20, "b.example.net"),
                    ]),
                ),
                (("a.example.net", RecordType::A), a(&[[127, 0, 0, 11]])),
                (
                    ("a.example.net", RecordType::AAAA),
                    Answer::Aaaa(vec!["::1".parse().unwrap()]),
                ),
                (
                    ("b.example.net", RecordType::A),
                    a(&[[127, 0, 0, 21], [127, 0, 0, 22]]),
                ),
                (("c.example.net", RecordType::A), a(&[[127, 0, 0, 31]])),
            ]);
            let c = candidates(
                &NextHop::parse("example.net:2525").unwrap(),
                &dns.resolver(),
            )
            .unwrap();
            assert_eq!(
                addrs(&c),
                vec![
                    "a.example.net[127.0.0.11]:2525",
                    "a.example.net[::1]:2525",
                    "b.example.net[127.0.0.21]:2525",
                    "b.example.net[127.0.0.22]:2525",
                    "c.example.net[127.0.0.31]:2525",
                ]
            );
        }

        #[test]
        fn at_most_max_addresses() {
            let many: Vec<[u8; 4]> = (1..=9).map(|i| [127, 0, 1, i]).collect();
            let dns = FakeDns::start(vec![(("big.test", RecordType::A), a(&many))]);
            let c = candidates(&NextHop::domain("big.test"), &dns.resolver()).unwrap();
            assert_eq!(c.len(), MAX_ADDRESSES);
        }

        #[test]
        fn no_mx_falls_back_to_the_domains_address() {
            // RFC 5321 5.1: no MX records, so the domain is its own mail host.
            let dns = FakeDns::start(vec![(("plain.test", RecordType::A), a(&[[127, 0, 0, 5]]))]);
            let c = candidates(&NextHop::domain("plain.test"), &dns.resolver()).unwrap();
            assert_eq!(addrs(&c), vec!["plain.test[127.0.0.5]:25"]);
            // A host next hop skips MX and resolves the name itself.
            let c = candidates(
                &NextHop::parse("[plain.test]:587").unwrap(),
                &dns.resolver(),
            )
            .unwrap();
            assert_eq!(addrs(&c), vec!["plain.test[127.0.0.5]:587"]);
        }

        #[test]
        fn a_dead_mx_host_is_skipped() {
            let dns = FakeDns::start(vec![
                (
                    ("example.org", RecordType::MX),
                    Answer::Mx(vec![(10, "gone.example.org"), (20, "ok.example.org")]),
                ),
                (("gone.example.org", RecordType::A), Answer::NxDomain),
                (("ok.example.org", RecordType::A), a(&[[127, 0, 0, 7]])),
            ]);
            let c = candidates(&NextHop::domain("example.org"), &dns.resolver()).unwrap();
            assert_eq!(addrs(&c), vec!["ok.example.org[127.0.0.7]:25"]);
        }

        #[test]
        fn dns_failures() {
            let dns = FakeDns::start(vec![
                (("nullmx.test", RecordType::MX), Answer::Mx(vec![(0, "")])),
                (("nx.test", RecordType::MX), Answer::NxDomain),
                (("fail.test", RecordType::MX), Answer::ServFail),
                (
                    ("noaddr.test", RecordType::MX),
                    Answer::Mx(vec![(10, "mx.noaddr.test")]),
                ),
                (("mx.noaddr.test", RecordType::A), Answer::ServFail),
                (("nxhost.test", RecordType::A), Answer::NxDomain),
            ]);
            let r = dns.resolver();
            let f = candidates(&NextHop::domain("nullmx.test"), &r).unwrap_err();
            assert!(f.permanent && f.status == "5.1.10", "{f:?}");
            let f = candidates(&NextHop::domain("nx.test"), &r).unwrap_err();
            assert!(f.permanent && f.status == "5.4.4", "{f:?}");
            assert!(
                f.diagnostic.contains("Host or domain name not found"),
                "{f:?}"
            );
            let f = candidates(&NextHop::domain("fail.test"), &r).unwrap_err();
            assert!(!f.permanent && f.status == "4.4.3", "{f:?}");
            let f = candidates(&NextHop::domain("noaddr.test"), &r).unwrap_err();
            assert!(!f.permanent, "{f:?}");
            let f = candidates(&NextHop::parse("[nxhost.test]").unwrap(), &r).unwrap_err();
            assert!(f.permanent && f.status == "5.4.4", "{f:?}");
        }
    }
}
