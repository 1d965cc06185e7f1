//! Client sockets for the load tools: loopback only, optionally from one of several source
//! addresses (127.0.0.x), since servers limit connections per client address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// The source address of connection `i` of `sources` (none to choose if `sources` <= 1).
pub fn source_for(sources: u32, i: usize) -> Option<IpAddr> {
    (sources > 1).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources as usize) as u8)))
}

/// A TCP connection to `addr` (which must be loopback) from `source`, with `timeout` for the
/// connect and for every read and write, Nagle off.
pub fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::other(format!("{addr}: loopback addresses only")));
    }
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Some(ip) = source {
        sock.bind(&SocketAddr::new(ip, 0).into())?;
    }
    sock.connect_timeout(&addr.into(), timeout)?;
    let tcp: TcpStream = sock.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    Ok(tcp)
}
