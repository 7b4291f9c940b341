//! The hop limit, sensed from IMDS itself: no EC2 call, no credentials, no TLS.
//!
//! IMDS sends its token (PUT) answer with an IP TTL equal to the instance's hop limit (EC2 user guide,
//! "Configure the instance metadata options"), and a process on the instance receives it before any router
//! takes one off. Linux's `IP_MINTTL` (`IPV6_MINHOPCOUNT`; RFC 5082) makes the kernel drop every received TCP
//! segment of a socket whose TTL is below the value, SYN-ACKs included, and count each drop as
//! `TcpExtTCPMinTTLDrop` in `/proc/net/netstat`. So a token answer that arrives on a fresh socket with
//! `IP_MINTTL = W` proves that the hop limit is at least W (from inside a container, at least W plus its
//! extra hops).
//!
//! An answer counts only with proof that the kernel enforced the bound on this path and that the TTL came from
//! IMDS's hop limit: a control probe at `IP_MINTTL = 64` must be dropped, and the drop must show in the
//! counter. IMDS caps the hop limit at 64, and whatever answers for the address locally (a proxy, a DNAT to an
//! emulator) sends with the system's default TTL of 64: an answer that arrives at 64 does not speak for the hop
//! limit, and an instance whose hop limit really is 64 just costs one EC2 call. A `setsockopt` error, a
//! missing counter, a slow IMDS or any other doubt is "not proven": the run asks EC2, as without sensing.
//! Nothing sensed ever changes anything by itself: a change is always planned from EC2's answer.

use crate::plan::{HopLimit, HttpTokens, Toggle, Wanted};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};

/// IMDS answers in about a millisecond on the instance: an answer not here by then was dropped, or is not
/// coming. Also how long the control probe waits for its drop to show in the counter.
pub const PROBE_WAIT: Duration = Duration::from_millis(250);
/// The largest hop limit IMDS takes; whatever answers locally sends with the default TTL, also 64.
const CONTROL_TTL: u8 = 64;
const COUNTER: &str = "TCPMinTTLDrop";

/// What IMDS itself shows of the instance's metadata options, with its proof.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sensed {
    /// The token answer reaches this process with at least this TTL: the hop limit is at least this.
    pub hop_limit_at_least: HopLimit,
    /// From a GET without a token: 401 is required, 200 optional.
    pub http_tokens: Option<HttpTokens>,
    /// From `tags/instance`, asked only when wanted: 200 is enabled, 404 disabled.
    pub instance_tags: Option<Toggle>,
}

/// Whether what IMDS itself proved is all that is wanted, so that EC2 need not be asked. Only what sensing
/// can see counts: the hop limit at least the wanted one (never `--exact`: a higher one would have to be
/// lowered, and sensing proves only a lower bound), the endpoint (IMDS answered), HttpTokens and the instance
/// tags when asked for and sensed; the IPv6 endpoint cannot be sensed.
pub fn compliant(sensed: &Sensed, wanted: &Wanted) -> bool {
    !wanted.exact
        && sensed.hop_limit_at_least >= wanted.hop_limit
        && wanted.ipv6_endpoint.is_none()
        && wanted.http_tokens.is_none_or(|t| sensed.http_tokens == Some(t))
        && wanted.instance_tags.is_none_or(|t| sensed.instance_tags == Some(t))
}

/// An IMDSv2 token a probe received: a secret, only ever sent back to IMDS, never shown (no `Debug`).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The outcome of sensing: proven, or why not (the run then asks EC2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// The token answer arrived at the wanted bound, and the kernel showed it enforces the bound here; with the
    /// token it brought, for the identity's reads.
    Proven(Sensed, Token),
    /// The kernel enforces the bound on this path (the control probe's drop was counted), but the token
    /// answer did not arrive at the wanted bound: the hop limit is probably lower. Data-plane verification
    /// of a change works.
    Below,
    /// Nothing can be concluded; the reason, for the log.
    Unproven(String),
}

/// Where IMDS is, as an address a socket can connect to: an `http://` endpoint whose host is an IP literal.
pub fn address(endpoint: &str) -> Option<SocketAddr> {
    let uri: http::Uri = endpoint.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().ok()?;
    Some(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

/// Senses the hop limit (at least `wanted`), the token requirement, and with `tags` the instance tags.
pub async fn sense(addr: SocketAddr, wanted: HopLimit, tags: bool) -> Evidence {
    let Some(before) = drops() else {
        return Evidence::Unproven(format!("the kernel does not count {COUNTER} (/proc/net/netstat)"));
    };
    let asked = Instant::now();
    let token = match token_at(addr, wanted.get(), PROBE_WAIT).await {
        Ok(token) => token,
        Err(why) => return Evidence::Unproven(why),
    };
    let round_trip = asked.elapsed();
    // No answer at the bound: too low a hop limit, or an IMDS too slow to tell. A plain token request (no
    // bound) must be answered at once for "below" to mean the hop limit; the counter alone cannot say whose
    // drop it counted (it is one per network namespace).
    if token.is_none() {
        match exchange(addr, None, &token_request(addr), PROBE_WAIT).await {
            Ok(Some((200, _))) => {}
            _ => {
                return Evidence::Unproven(format!(
                    "IMDS did not answer a plain token request within {} ms: too slow to tell",
                    PROBE_WAIT.as_millis()
                ));
            }
        }
    }
    // The control: at 64, IMDS's answer (hop limit below 64) must be dropped, visibly. A counted drop ends it
    // early (no need to wait out an answer that will not come), but not before three round trips of the bounded
    // probe: the counter is the whole network namespace's, and an answer that does arrive at 64 would have by
    // then.
    let counted = async {
        tokio::time::sleep((round_trip * 3).max(Duration::from_millis(5))).await;
        dropped_since(before).await
    };
    tokio::select! {
        control = token_at(addr, CONTROL_TTL, PROBE_WAIT) => match control {
            Ok(Some(_)) => {
                return Evidence::Unproven(format!(
                    "an answer arrived with TTL {CONTROL_TTL}: something other than IMDS's hop limit sets it (a \
                     proxy, a NAT to a metadata emulator, or a hop limit of 64)"
                ));
            }
            Ok(None) if !dropped_since(before).await => {
                return Evidence::Unproven(format!(
                    "the control probe's answer did not come, but the kernel counted no {COUNTER}: not proof"
                ));
            }
            Ok(None) => {}
            Err(why) => return Evidence::Unproven(why),
        },
        true = counted => {}
    }
    let Some(token) = token else { return Evidence::Below };
    let http_tokens = match get(addr, "/latest/meta-data/", None).await {
        Some((401, _)) => Some(HttpTokens::Required),
        Some((200, _)) => Some(HttpTokens::Optional),
        _ => None,
    };
    let instance_tags = if tags {
        match get(addr, "/latest/meta-data/tags/instance", Some(&token)).await {
            Some((200, _)) => Some(Toggle::Enabled),
            Some((404, _)) => Some(Toggle::Disabled),
            _ => return Evidence::Unproven("the instance tags' answer was neither 200 nor 404".into()),
        }
    } else {
        None
    };
    Evidence::Proven(Sensed { hop_limit_at_least: wanted, http_tokens, instance_tags }, Token(token))
}

/// The instance id and region, read with a probe's token over the same kind of raw connection, validated as
/// strictly as the SDK path validates them; `None` on any doubt (the run then reads them as usual). A compliant
/// run so needs no HTTP client at all.
pub async fn identity(addr: SocketAddr, token: &Token) -> Option<(crate::ids::InstanceId, crate::ids::Region)> {
    let read = |path: &'static str| async move {
        match get(addr, path, Some(&token.0)).await {
            Some((200, body)) => Some(body),
            _ => None,
        }
    };
    let id = read("/latest/meta-data/instance-id").await?.parse::<crate::ids::InstanceId>().ok()?;
    let region = read("/latest/meta-data/placement/region").await?.parse::<crate::ids::Region>().ok()?;
    Some((id, region))
}

/// Whether sensing failed because nothing accepted the connection (IMDS not up yet, early in boot): worth
/// sensing again once the identity's retries found IMDS up.
pub fn unreachable(evidence: &Evidence) -> bool {
    matches!(evidence, Evidence::Unproven(why) if why.starts_with(NO_CONNECTION))
}

const NO_CONNECTION: &str = "no connection to";

/// Whether a token answer reaches this process with TTL at least `wanted`: one probe, for the verification of
/// a change, where the control already showed that the kernel enforces the bound on this path.
pub async fn arrives(addr: SocketAddr, wanted: HopLimit, wait: Duration) -> bool {
    matches!(token_at(addr, wanted.get(), wait).await, Ok(Some(_)))
}

/// What doctor measures: the TTL at which the token answer reaches this process (the largest bound at which
/// it still arrives, found by a binary search over 1..=64, at most 7 probes), and whether it also arrives at
/// 64, where only something other than IMDS's hop limit sets the TTL. `None`: no token answer at any bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub ttl: u8,
    /// The kernel showed it enforces the bound here: a probe above `ttl` was dropped and counted.
    pub enforced: bool,
}

pub async fn measure(addr: SocketAddr) -> Result<Option<Measured>, String> {
    let before = drops();
    let at = |w: u8| async move { token_at(addr, w, PROBE_WAIT).await.map(|t| t.is_some()) };
    if !at(1).await? {
        return Ok(None);
    }
    // The largest w in 1..=64 at which it arrives: arrives(lo) holds, arrives(hi + 1) does not (or hi = 64).
    let (mut lo, mut hi) = (1u8, CONTROL_TTL);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if at(mid).await? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let enforced = lo < CONTROL_TTL && before.is_some_and(|b| drops().is_some_and(|now| now > b));
    Ok(Some(Measured { ttl: lo, enforced }))
}

/// A token request (the probes' tokens live 60 s: they are used at once).
fn token_request(addr: SocketAddr) -> String {
    format!(
        "PUT /latest/api/token HTTP/1.1\r\nHost: {}\r\nX-aws-ec2-metadata-token-ttl-seconds: 60\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        host_header(addr)
    )
}

/// The token, if its answer arrived at `min_ttl`; `None` if it did not come in time; an error when the probe
/// could not be made or IMDS answered something else. The token is a secret: it is only ever sent back to IMDS.
async fn token_at(addr: SocketAddr, min_ttl: u8, wait: Duration) -> Result<Option<String>, String> {
    match exchange(addr, Some(min_ttl), &token_request(addr), wait).await? {
        None => Ok(None),
        Some((200, body)) if !body.is_empty() => Ok(Some(body)),
        Some((status, _)) => Err(format!("IMDS answered the token request with HTTP {status}")),
    }
}

/// (status, body) of IMDS's answer to a GET of `path` (with `token`, if given), on a plain socket.
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let token = token.map(|t| format!("X-aws-ec2-metadata-token: {t}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{token}Connection: close\r\n\r\n", host_header(addr));
    exchange(addr, None, &request, PROBE_WAIT).await.ok().flatten()
}

fn host_header(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// One HTTP/1.1 exchange on a fresh socket (never pooled, never through a proxy) that drops every segment
/// below `min_ttl`: (status, body), or `None` when no whole answer came within `wait`.
async fn exchange(
    addr: SocketAddr,
    min_ttl: Option<u8>,
    request: &str,
    wait: Duration,
) -> Result<Option<(u16, String)>, String> {
    let socket = if addr.is_ipv6() { TcpSocket::new_v6() } else { TcpSocket::new_v4() }
        .map_err(|e| format!("no socket: {e}"))?;
    if let Some(ttl) = min_ttl {
        set_min_ttl(&socket, addr.is_ipv6(), ttl)?;
    }
    let deadline = Instant::now() + wait;
    let Ok(connected) = timeout(wait, socket.connect(addr)).await else { return Ok(None) };
    let stream = connected.map_err(|e| format!("{NO_CONNECTION} {addr}: {}", e.kind()))?;
    match tokio::time::timeout_at(deadline, talk(&stream, request.as_bytes())).await {
        Err(_) => Ok(None),
        Ok(Err(e)) => Err(format!("the exchange failed: {}", e.kind())),
        Ok(Ok(answer)) => Ok(parse(&answer)),
    }
}

/// Writes `request`, then reads until the peer closes (at most 16 KiB): readiness and non-blocking calls, the
/// `net` feature's own, without tokio's io-util.
async fn talk(stream: &TcpStream, mut request: &[u8]) -> std::io::Result<Vec<u8>> {
    while !request.is_empty() {
        stream.writable().await?;
        match stream.try_write(request) {
            Ok(n) => request = &request[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 2048];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() > 16 * 1024 {
                    return Ok(answer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// (status, body) of a whole HTTP/1.1 answer whose connection closed after it.
fn parse(answer: &[u8]) -> Option<(u16, String)> {
    let text = std::str::from_utf8(answer).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.trim().to_string()))
}

fn set_min_ttl(socket: &TcpSocket, v6: bool, ttl: u8) -> Result<(), String> {
    let (level, name) =
        if v6 { (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT) } else { (libc::IPPROTO_IP, libc::IP_MINTTL) };
    crate::hops::set_int(socket, level, name, i32::from(ttl))
        .map_err(|e| format!("the kernel refused the minimum TTL option: {e}"))
}

/// `TcpExtTCPMinTTLDrop` from /proc/net/netstat (a header line of names, then a line of values).
fn drops() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    counter(&text, COUNTER)
}

fn counter(netstat: &str, name: &str) -> Option<u64> {
    let mut lines = netstat.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let (Some(("TcpExt", names)), Some(("TcpExt", values))) = (names.split_once(": "), values.split_once(": "))
        else {
            continue;
        };
        let at = names.split_whitespace().position(|n| n == name)?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

/// Whether the counter rose since `before`, looking until `PROBE_WAIT` has passed.
async fn dropped_since(before: u64) -> bool {
    let until = Instant::now() + PROBE_WAIT;
    loop {
        if drops().is_some_and(|now| now > before) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_is_read_from_the_tcpext_lines_only() {
        let netstat = "TcpExt: SyncookiesSent TCPMinTTLDrop TCPAckCompressed\nTcpExt: 0 17 3\n\
                       IpExt: InNoRoutes TCPMinTTLDrop\nIpExt: 0 99\n";
        assert_eq!(counter(netstat, "TCPMinTTLDrop"), Some(17));
        assert_eq!(counter("IpExt: A\nIpExt: 1\n", "TCPMinTTLDrop"), None);
        assert_eq!(counter("TcpExt: SyncookiesSent\nTcpExt: 0\n", "TCPMinTTLDrop"), None);
    }

    #[test]
    fn only_http_endpoints_at_an_ip_address_can_be_sensed() {
        assert_eq!(address("http://169.254.169.254"), Some("169.254.169.254:80".parse().unwrap()));
        assert_eq!(address("http://[fd00:ec2::254]"), Some("[fd00:ec2::254]:80".parse().unwrap()));
        assert_eq!(address("http://127.0.0.1:8080"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(address("https://127.0.0.1:8443"), None, "TLS: the TTL is not what a probe reads");
        assert_eq!(address("http://metadata.local"), None, "a name: what answers is not known");
    }

    #[test]
    fn answers_are_parsed_only_when_whole() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd"), Some((200, "abcd".into())));
        assert_eq!(parse(b"HTTP/1.1 401 Unauthorized\r\n\r\n"), Some((401, String::new())));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Len"), None);
    }

    /// A kernel that enforces the bound: this machine's loopback, a listener whose answers carry TTL 1.
    #[tokio::test]
    async fn the_kernel_drops_an_answer_below_the_bound_and_counts_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                s.set_ttl(1).unwrap();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntoken");
                });
            }
        });
        let Some(before) = drops() else { return };
        assert!(arrives(addr, HopLimit::new(1).unwrap(), PROBE_WAIT).await, "TTL 1 at a bound of 1");
        assert!(!arrives(addr, HopLimit::new(2).unwrap(), PROBE_WAIT).await, "TTL 1 at a bound of 2 is dropped");
        assert!(dropped_since(before).await, "and counted");
    }
}
