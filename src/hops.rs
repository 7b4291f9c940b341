//! How many hops this process is from IMDS, measured without privileges as `tracepath` does: UDP probes with
//! a rising TTL on a socket with `IP_RECVERR` (`IPV6_RECVERR`), which delivers the ICMP answers (time
//! exceeded from a router, port unreachable from the destination) to an unprivileged process as errors.
//!
//! IMDS sends its token answer with the instance's hop limit as TTL; each router on the way back takes one
//! off. So the hop limit must be at least the TTL a probe needs to reach IMDS. On EC2 IMDS itself may not
//! answer a UDP probe: then the routers that answered are counted, and IMDS is one hop past the last of them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

/// The most hops probed: a hop limit above this is never what a container network needs.
pub const MAX_HOPS: u8 = 8;

/// What the probes found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hops {
    /// The destination answered (port unreachable) to a probe with this TTL.
    Reached(u8),
    /// The destination never answered; the farthest router that did was this many hops away. IMDS is one
    /// hop past it (0: no router answered, IMDS is on this host's own link).
    PastRouters(u8),
}

impl Hops {
    /// The hops from this process to IMDS: the smallest hop limit whose token answer reaches it.
    pub fn count(self) -> u8 {
        match self {
            Hops::Reached(n) => n,
            Hops::PastRouters(n) => n + 1,
        }
    }
}

/// What one probe heard back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Router,
    Destination,
    Silence,
}

/// Probes `target` (IMDS's address; the port is any) with TTL 1, 2, ... up to `MAX_HOPS`, waiting `wait` for
/// each answer, and stops at the destination.
pub fn measure(target: SocketAddr, wait: Duration) -> io::Result<Hops> {
    let mut farthest_router = 0;
    for ttl in 1..=MAX_HOPS {
        match probe(target, ttl, wait)? {
            Answer::Destination => return Ok(Hops::Reached(ttl)),
            Answer::Router => farthest_router = ttl,
            // Three silent hops past the last answer: nothing farther will answer (IMDS on EC2 does not).
            Answer::Silence if ttl >= farthest_router + SILENT_HOPS => break,
            Answer::Silence => {}
        }
    }
    Ok(Hops::PastRouters(farthest_router))
}

const SILENT_HOPS: u8 = 3;

fn probe(target: SocketAddr, ttl: u8, wait: Duration) -> io::Result<Answer> {
    let bind: SocketAddr = if target.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
    let socket = UdpSocket::bind(bind)?;
    // A port no service listens on, distinct per TTL as traceroute's are, so a late answer is not mistaken.
    let mut to = target;
    to.set_port(33434 + u16::from(ttl));
    socket.connect(to)?;
    recv_errors(&socket, target.is_ipv6())?;
    if target.is_ipv6() {
        set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, i32::from(ttl))?;
    } else {
        socket.set_ttl(u32::from(ttl))?;
    }
    socket.set_read_timeout(Some(wait))?;
    socket.send(b"imds-hop-limit hop probe")?;
    let mut buf = [0u8; 64];
    Ok(match socket.recv(&mut buf) {
        Ok(_) => Answer::Destination,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Answer::Destination,
        // Time exceeded (and a router's own unreachable) arrive as EHOSTUNREACH with IP_RECVERR.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EHOSTUNREACH | libc::ENETUNREACH)) => Answer::Router,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Answer::Silence,
        Err(e) => return Err(e),
    })
}

/// `IP_RECVERR` / `IPV6_RECVERR`: ICMP errors for this socket, time exceeded included, are reported to it.
fn recv_errors(socket: &UdpSocket, v6: bool) -> io::Result<()> {
    if v6 {
        set_int(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1)
    } else {
        set_int(socket, libc::IPPROTO_IP, libc::IP_RECVERR, 1)
    }
}

/// An integer socket option (`setsockopt`), for the probes here and sensing's minimum TTL.
pub fn set_int(socket: &impl AsRawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid socket descriptor, and a pointer to an int that lives across the call, with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_one_hop_and_answers_as_the_destination() {
        let hops = measure("127.0.0.1:80".parse().unwrap(), Duration::from_millis(500)).unwrap();
        assert_eq!(hops, Hops::Reached(1));
        assert_eq!(hops.count(), 1);
    }

    #[test]
    fn silent_destinations_count_the_routers_that_answered_plus_one() {
        assert_eq!(Hops::PastRouters(0).count(), 1);
        assert_eq!(Hops::PastRouters(2).count(), 3);
        assert_eq!(Hops::Reached(2).count(), 2);
    }
}
