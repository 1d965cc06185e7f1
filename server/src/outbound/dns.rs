//! A small stub resolver: MX, A and AAAA queries to the configured recursive resolvers over
//! a blocking UDP socket, again over TCP when the answer is truncated. DNS messages are
//! built and parsed with hickory-proto; no async runtime is involved.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// Largest UDP answer read (EDNS is not used, so a server sends at most 512 octets; the room
/// is for servers that send more anyway).
const UDP_BUFFER: usize = 4096;

/// Why a lookup gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// NXDOMAIN: the name does not exist (a permanent answer).
    #[error("host not found")]
    NotFound,
    /// Every server failed (SERVFAIL, REFUSED, timeout, bad answer): try again later.
    #[error("{0}")]
    Temporary(String),
    #[error("no DNS servers configured")]
    NoServers,
}

/// Asks recursive resolvers, in order, until one answers.
#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    timeout: Duration,
    ids: RandomState,
}

impl Resolver {
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Resolver {
        Resolver {
            servers,
            timeout,
            ids: RandomState::new(),
        }
    }

    /// The configured servers, or when none are the `nameserver` lines of /etc/resolv.conf
    /// (127.0.0.1 if it names none).
    pub fn from_config(cfg: &crate::config::Dns) -> Resolver {
        let servers = if cfg.servers.is_empty() {
            system_servers(Path::new("/etc/resolv.conf"))
        } else {
            cfg.servers.clone()
        };
        Resolver::new(servers, cfg.timeout)
    }

    pub fn servers(&self) -> &[SocketAddr] {
        &self.servers
    }

    /// The MX records of `domain` as (preference, host without the trailing dot). An
    /// empty list means the domain exists without MX records; a null MX (RFC 7505) is the
    /// host `""`.
    pub fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let answer = self.query(domain, RecordType::MX)?;
        Ok(answer
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::MX(mx) => Some((mx.preference(), host_name(mx.exchange()))),
                _ => None,
            })
            .collect())
    }

    /// The addresses of `host`: its A records, then its AAAA records.
    pub fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.query(host, RecordType::A);
        if let Err(DnsError::NotFound) = v4 {
            return Err(DnsError::NotFound);
        }
        let v6 = self.query(host, RecordType::AAAA);
        let mut out = Vec::new();
        let mut first_error = None;
        for (answer, want) in [(v4, RecordType::A), (v6, RecordType::AAAA)] {
            match answer {
                Ok(m) => out.extend(m.answers().iter().filter_map(|r| match (r.data(), want) {
                    (RData::A(a), RecordType::A) => Some(IpAddr::V4(a.0)),
                    (RData::AAAA(a), RecordType::AAAA) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (out.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(out),
        }
    }

    /// One question to each server in turn until one gives a usable answer.
    fn query(&self, name: &str, rtype: RecordType) -> Result<Message, DnsError> {
        if self.servers.is_empty() {
            return Err(DnsError::NoServers);
        }
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        let qname = Name::from_ascii(&fqdn)
            .map_err(|e| DnsError::Temporary(format!("bad name {name:?}: {e}")))?;
        let mut last = String::new();
        for &server in &self.servers {
            let id = self.new_id();
            let mut msg = Message::new();
            msg.set_id(id)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(true)
                .add_query(Query::query(qname.clone(), rtype));
            let wire = msg
                .to_vec()
                .map_err(|e| DnsError::Temporary(format!("cannot encode query: {e}")))?;
            let answer = match self.exchange_udp(server, &wire, id, &qname, rtype) {
                Ok(a) if a.truncated() => self.exchange_tcp(server, &wire, id, &qname, rtype),
                other => other,
            };
            match answer {
                Ok(a) => match a.response_code() {
                    ResponseCode::NoError => return Ok(a),
                    ResponseCode::NXDomain => return Err(DnsError::NotFound),
                    code => last = format!("{server} answered {code}"),
                },
                Err(e) => last = format!("{server}: {e}"),
            }
        }
        Err(DnsError::Temporary(last))
    }

    fn new_id(&self) -> u16 {
        let mut h = self.ids.build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        );
        h.finish() as u16
    }

    fn exchange_udp(
        &self,
        server: SocketAddr,
        wire: &[u8],
        id: u16,
        qname: &Name,
        rtype: RecordType,
    ) -> io::Result<Message> {
        let local: SocketAddr = if server.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(local)?;
        sock.connect(server)?;
        sock.send(wire)?;
        let deadline = Instant::now() + self.timeout;
        let mut buf = vec![0u8; UDP_BUFFER];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            sock.set_read_timeout(Some(left))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
                }
                Err(e) => return Err(e),
            };
            // Anything that is not the answer to this question is ignored, not trusted.
            if let Ok(m) = Message::from_vec(&buf[..n]) {
                if answers(&m, id, qname, rtype) {
                    return Ok(m);
                }
            }
        }
    }

    fn exchange_tcp(
        &self,
        server: SocketAddr,
        wire: &[u8],
        id: u16,
        qname: &Name,
        rtype: RecordType,
    ) -> io::Result<Message> {
        let mut s = TcpStream::connect_timeout(&server, self.timeout)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&(wire.len() as u16).to_be_bytes());
        framed.extend_from_slice(wire);
        s.write_all(&framed)?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len)?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf)?;
        let m = Message::from_vec(&buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if !answers(&m, id, qname, rtype) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer does not match the question",
            ));
        }
        Ok(m)
    }
}

/// Whether `m` is the response to our question.
fn answers(m: &Message, id: u16, qname: &Name, rtype: RecordType) -> bool {
    m.id() == id
        && m.message_type() == MessageType::Response
        && m.queries().len() == 1
        && m.queries()[0].query_type() == rtype
        && m.queries()[0]
            .name()
            .to_ascii()
            .eq_ignore_ascii_case(&qname.to_ascii())
}

/// A host name from DNS without its trailing dot; the root (null MX) is `""`.
fn host_name(n: &Name) -> String {
    if n.is_root() {
        return String::new();
    }
    n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

/// The `nameserver` addresses of a resolv.conf file; 127.0.0.1:53 if there are none.
pub fn system_servers(path: &Path) -> Vec<SocketAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let servers = parse_resolv_conf(&text);
    if servers.is_empty() {
        vec![SocketAddr::from(([127, 0, 0, 1], 53))]
    } else {
        servers
    }
}

fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "nameserver").then_some(())?;
            // A scoped IPv6 address (fe80::1%eth0) keeps only the address.
            let ip = w.next()?.split('%').next()?;
            ip.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod fake {
    //! A DNS server on 127.0.0.1 for tests: answers from a fixed table over UDP and TCP.

    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, MX};
    use hickory_proto::rr::Record;
    use std::collections::HashMap;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::thread::JoinHandle;

    /// What the fake server says for a name.
    #[derive(Clone, Debug)]
    pub(crate) enum Answer {
        Mx(Vec<(u16, &'static str)>),
        A(Vec<std::net::Ipv4Addr>),
        Aaaa(Vec<std::net::Ipv6Addr>),
        NxDomain,
        ServFail,
        /// Over UDP only the truncation flag; the records come over TCP.
        TruncatedA(Vec<std::net::Ipv4Addr>),
    }

    pub(crate) struct FakeDns {
        pub(crate) addr: SocketAddr,
        stop: Arc<AtomicBool>,
        pub(crate) queries: Arc<AtomicUsize>,
        threads: Vec<JoinHandle<()>>,
    }

    type Table = Arc<HashMap<(String, RecordType), Answer>>;

    impl FakeDns {
        /// `table`: (name, type) → answer; a question not in it gets NOERROR with no records.
        pub(crate) fn start(table: Vec<((&str, RecordType), Answer)>) -> FakeDns {
            let table: Table = Arc::new(
                table
                    .into_iter()
                    .map(|((n, t), a)| ((n.to_string(), t), a))
                    .collect(),
            );
            // UDP and TCP on the same port number.
            let (udp, tcp) = loop {
                let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
                if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                    break (udp, tcp);
                }
            };
            let addr = udp.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let queries = Arc::new(AtomicUsize::new(0));
            udp.set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            tcp.set_nonblocking(true).unwrap();
            let mut threads = Vec::new();
            {
                let (stop, table, queries) = (stop.clone(), table.clone(), queries.clone());
                threads.push(std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                            continue;
                        };
                        queries.fetch_add(1, Ordering::Relaxed);
                        if let Some(out) = respond(&table, &buf[..n], true) {
                            let _ = udp.send_to(&out, peer);
                        }
                    }
                }));
            }
            {
                let (stop, table) = (stop.clone(), table.clone());
                threads.push(std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((mut s, _)) = tcp.accept() else {
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        };
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                        let mut len = [0u8; 2];
                        if s.read_exact(&mut len).is_err() {
                            continue;
                        }
                        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                        if s.read_exact(&mut q).is_err() {
                            continue;
                        }
                        if let Some(out) = respond(&table, &q, false) {
                            let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&out);
                            let _ = s.write_all(&framed);
                        }
                    }
                }));
            }
            FakeDns {
                addr,
                stop,
                queries,
                threads,
            }
        }

        pub(crate) fn resolver(&self) -> Resolver {
            Resolver::new(vec![self.addr], Duration::from_secs(2))
        }
    }

    impl Drop for FakeDns {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
    }

    fn respond(table: &Table, query: &[u8], udp: bool) -> Option<Vec<u8>> {
        let q = Message::from_vec(query).ok()?;
        let question = q.queries().first()?.clone();
        let name = question.name().to_ascii().trim_end_matches('.').to_string();
        let mut m = Message::new();
        m.set_id(q.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_recursion_available(true)
            .add_query(question.clone());
        let owner = question.name().clone();
        let rec = |data: RData| Record::from_rdata(owner.clone(), 300, data);
        match table.get(&(name, question.query_type())) {
            None => {}
            Some(Answer::NxDomain) => {
                m.set_response_code(ResponseCode::NXDomain);
            }
            Some(Answer::ServFail) => {
                m.set_response_code(ResponseCode::ServFail);
            }
            Some(Answer::Mx(list)) => {
                for (pref, host) in list {
                    let ex = if host.is_empty() {
                        Name::root()
                    } else {
                        Name::from_ascii(format!("{host}.")).unwrap()
                    };
                    m.add_answer(rec(RData::MX(MX::new(*pref, ex))));
                }
            }
            Some(Answer::A(list)) => {
                for ip in list {
                    m.add_answer(rec(RData::A(A(*ip))));
                }
            }
            Some(Answer::Aaaa(list)) => {
                for ip in list {
                    m.add_answer(rec(RData::AAAA(AAAA(*ip))));
                }
            }
            Some(Answer::TruncatedA(list)) => {
                if udp {
                    m.set_truncated(true);
                } else {
                    for ip in list {
                        m.add_answer(rec(RData::A(A(*ip))));
                    }
                }
            }
        }
        m.to_vec().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Answer, FakeDns};
    use super::*;

    #[test]
    fn mx_a_aaaa_from_the_fake_server() {
        let dns = FakeDns::start(vec![
            (
                ("example.net", RecordType::MX),
                Answer::Mx(vec![(20, "mx2.example.net"), (10, "MX1.example.net")]),
            ),
            (
                ("mx1.example.net", RecordType::A),
                Answer::A(vec![[127, 0, 0, 2].into(), [127, 0, 0, 3].into()]),
            ),
            (
                ("mx1.example.net", RecordType::AAAA),
                Answer::Aaaa(vec!["::1".parse().unwrap()]),
            ),
            (("gone.example", RecordType::MX), Answer::NxDomain),
            (("gone.example", RecordType::A), Answer::NxDomain),
            (("broken.example", RecordType::MX), Answer::ServFail),
        ]);
        let r = dns.resolver();
        assert_eq!(
            r.mx("example.net").unwrap(),
            vec![
                (20, "mx2.example.net".into()),
                (10, "mx1.example.net".into())
            ]
        );
        assert_eq!(
            r.addresses("mx1.example.net").unwrap(),
            vec![
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "127.0.0.3".parse().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        // A name with no records of the type: an empty answer, not an error.
        assert_eq!(r.mx("nomx.example").unwrap(), vec![]);
        assert!(matches!(r.mx("gone.example"), Err(DnsError::NotFound)));
        assert!(matches!(
            r.addresses("gone.example"),
            Err(DnsError::NotFound)
        ));
        assert!(matches!(
            r.mx("broken.example"),
            Err(DnsError::Temporary(_))
        ));
    }

    #[test]
    fn truncated_answer_is_asked_again_over_tcp() {
        let dns = FakeDns::start(vec![(
            ("big.example", RecordType::A),
            Answer::TruncatedA(vec![[127, 0, 0, 9].into()]),
        )]);
        assert_eq!(
            dns.resolver().addresses("big.example").unwrap(),
            vec!["127.0.0.9".parse::<IpAddr>().unwrap()]
        );
        // A and AAAA over UDP; the A answer again over TCP.
        assert_eq!(dns.queries.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn silent_server_times_out_then_the_next_one_answers() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dns = FakeDns::start(vec![(
            ("ok.example", RecordType::A),
            Answer::A(vec![[127, 0, 0, 4].into()]),
        )]);
        let r = Resolver::new(
            vec![silent.local_addr().unwrap(), dns.addr],
            Duration::from_millis(200),
        );
        assert_eq!(
            r.addresses("ok.example").unwrap(),
            vec!["127.0.0.4".parse::<IpAddr>().unwrap()]
        );
        let r = Resolver::new(
            vec![silent.local_addr().unwrap()],
            Duration::from_millis(100),
        );
        assert!(matches!(r.mx("ok.example"), Err(DnsError::Temporary(_))));
        assert!(matches!(
            Resolver::new(vec![], Duration::from_millis(1)).mx("x.example"),
            Err(DnsError::NoServers)
        ));
    }

    #[test]
    fn resolv_conf() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "10.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(
            system_servers(Path::new("/nonexistent/resolv.conf")),
            vec!["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
    }
}
