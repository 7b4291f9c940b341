//! A simulated EC2 instance on loopback: an IMDSv2 server and an EC2 Query API server that share one
//! instance's state, with faults chosen per scenario and a log of every request for exact counts.
//! Test-only: it is never part of the shipped binary.
#![allow(dead_code)]

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
pub const REGION: &str = "us-west-2";
pub const ROLE: &str = "sim-instance-role";
pub const ACCOUNT: &str = "123456789012";
/// Every secret the simulator hands out starts with this, so a test can search output for it.
pub const SECRET_MARK: &str = "SIMSECRET";

#[derive(Debug, Clone)]
pub struct Options {
    pub http_tokens: Option<&'static str>,
    pub hop_limit: Option<i64>,
    pub http_endpoint: Option<&'static str>,
    pub ipv6: Option<&'static str>,
    pub tags: Option<&'static str>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            http_tokens: Some("optional"),
            hop_limit: Some(1),
            http_endpoint: Some("enabled"),
            ipv6: Some("disabled"),
            tags: Some("disabled"),
        }
    }
}

/// What the simulated instance is and which faults it shows.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub options: Options,
    /// How long a change stays `pending` before it is `applied`.
    pub pending_for: Duration,
    pub pending_forever: bool,
    pub role_attached: bool,
    /// Access keys the EC2 side accepts besides the role's (for static credentials).
    pub static_keys: Vec<String>,
    /// EC2 actions answered with UnauthorizedOperation.
    pub unauthorized: Vec<&'static str>,
    pub throttle_first: usize,
    pub server_error_first: usize,
    pub ec2_delay: Duration,
    pub imds_refuse_for: Duration,
    pub token_never_answers: bool,
    pub malformed_describe: bool,
    pub malformed_credentials: bool,
    /// The instance EC2 knows; another id is NotFound.
    pub instance_id: String,
    /// Set IP_TTL / IPV6_UNICAST_HOPS of each IMDS connection to the applied hop limit, as IMDS does.
    pub ttl_is_hop_limit: bool,
    /// More addresses the IMDS side listens on (fd00:ec2::254 beside 169.254.169.254).
    pub extra_imds: Vec<SocketAddr>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            options: Options::default(),
            pending_for: Duration::from_millis(300),
            pending_forever: false,
            role_attached: true,
            static_keys: Vec::new(),
            unauthorized: Vec::new(),
            throttle_first: 0,
            server_error_first: 0,
            ec2_delay: Duration::ZERO,
            imds_refuse_for: Duration::ZERO,
            token_never_answers: false,
            malformed_describe: false,
            malformed_credentials: false,
            instance_id: INSTANCE_ID.into(),
            ttl_is_hop_limit: false,
            extra_imds: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub server: &'static str,
    pub method: String,
    pub path: String,
    /// The EC2 Action, or empty.
    pub action: String,
    pub dry_run: bool,
    pub params: Vec<(String, String)>,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
}

struct State {
    scenario: Scenario,
    options: Options,
    /// When the last change turns from pending to applied; None when applied.
    applied_at: Option<Instant>,
    /// When the last change was (or will be) applied, kept after it was.
    last_apply: Option<Instant>,
    /// The hop limit in effect (what IMDS answers with), which changes only once applied.
    effective_hop_limit: i64,
    tokens: HashMap<String, Instant>,
    /// (access key id, secret access key) of every credential handed out.
    issued_keys: Vec<(String, String)>,
    sessions: Vec<String>,
    throttled: usize,
    errored: usize,
    log: Vec<Logged>,
    started: Instant,
    counter: u64,
}

impl State {
    fn settle(&mut self) {
        if let Some(at) = self.applied_at {
            if !self.scenario.pending_forever && Instant::now() >= at {
                self.applied_at = None;
                self.effective_hop_limit = self.options.hop_limit.unwrap_or(1);
            }
        }
    }

    /// Logs a request at the time it is answered, under the lock that decides the answer.
    fn record(&mut self, mut entry: Logged) {
        entry.at_ms = self.started.elapsed().as_millis() as u64;
        self.log.push(entry);
    }

    fn secret(&mut self, kind: &str) -> String {
        self.counter += 1;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        format!("{SECRET_MARK}{kind}{:08x}{:04}", nanos, self.counter)
    }
}

pub struct Simulator {
    pub imds_url: String,
    pub ec2_url: String,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    /// Starts both servers on 127.0.0.1 in a thread of their own.
    pub fn start(scenario: Scenario) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap(), scenario)
    }

    pub fn start_on(imds_addr: SocketAddr, ec2_addr: SocketAddr, scenario: Scenario) -> Self {
        let state = Arc::new(Mutex::new(State {
            effective_hop_limit: scenario.options.hop_limit.unwrap_or(1),
            options: scenario.options.clone(),
            scenario,
            applied_at: None,
            last_apply: None,
            tokens: HashMap::new(),
            issued_keys: Vec::new(),
            sessions: Vec::new(),
            throttled: 0,
            errored: 0,
            log: Vec::new(),
            started: Instant::now(),
            counter: 0,
        }));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let imds = std::net::TcpListener::bind(imds_addr).expect("bind IMDS");
                let ec2 = TcpListener::bind(ec2_addr).await.expect("bind EC2");
                let imds_local = imds.local_addr().unwrap();
                addr_tx.send((imds_local, ec2.local_addr().unwrap())).unwrap();
                let (refuse_for, extra) = {
                    let s = st.lock().unwrap();
                    (s.scenario.imds_refuse_for, s.scenario.extra_imds.clone())
                };
                tokio::spawn(serve_imds(imds, imds_local, refuse_for, st.clone()));
                for addr in extra {
                    let listener = TcpListener::bind(addr).await.expect("bind extra IMDS address");
                    tokio::spawn(serve(listener, st.clone(), "imds"));
                }
                tokio::spawn(serve(ec2, st.clone(), "ec2"));
                let _ = shutdown_rx.await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        let (imds_local, ec2_local) = addr_rx.recv().expect("simulator started");
        Simulator {
            imds_url: format!("http://{}", url_host(imds_local)),
            ec2_url: format!("http://{}", url_host(ec2_local)),
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Back to the scenario's first state, with an empty request log (for repeated benchmark runs).
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.options = s.scenario.options.clone();
        s.effective_hop_limit = s.options.hop_limit.unwrap_or(1);
        s.applied_at = None;
        s.last_apply = None;
        s.throttled = 0;
        s.errored = 0;
        s.log.clear();
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn count(&self, server: &str, what: &str) -> usize {
        self.requests().iter().filter(|r| r.server == server && (r.action == what || r.path == what)).count()
    }

    pub fn token_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.server == "imds" && r.method == "PUT").count()
    }

    /// (state, hop limit, endpoint, tokens) as DescribeInstances would say now.
    pub fn options(&self) -> (String, Option<i64>, Option<&'static str>, Option<&'static str>) {
        let mut s = self.state.lock().unwrap();
        s.settle();
        let state = if s.applied_at.is_some() { "pending" } else { "applied" };
        (state.into(), s.options.hop_limit, s.options.http_endpoint, s.options.http_tokens)
    }

    pub fn effective_hop_limit(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.settle();
        s.effective_hop_limit
    }

    /// Milliseconds since start at which the last change turned applied, if it has.
    pub fn applied_at_ms(&self) -> Option<u64> {
        let s = self.state.lock().unwrap();
        s.last_apply.map(|at| at.duration_since(s.started).as_millis() as u64)
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.state.lock().unwrap().started.elapsed().as_millis() as u64
    }

    /// Every secret handed out so far: tokens, access keys, secret keys, session tokens.
    pub fn secrets(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut all: Vec<String> = s.tokens.keys().cloned().collect();
        for (key, secret) in &s.issued_keys {
            all.push(key.clone());
            all.push(secret.clone());
        }
        all.extend(s.sessions.iter().cloned());
        all
    }

    /// The environment a run of the agent needs to use this simulator and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.imds_url.clone()),
            ("AWS_ENDPOINT_URL_EC2", self.ec2_url.clone()),
        ]
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn url_host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// IMDS refuses connections at early boot: the listener only opens after `refuse_for`.
async fn serve_imds(listener: std::net::TcpListener, addr: SocketAddr, refuse_for: Duration, state: Arc<Mutex<State>>) {
    let listener = if refuse_for.is_zero() {
        listener.set_nonblocking(true).unwrap();
        TcpListener::from_std(listener).unwrap()
    } else {
        drop(listener);
        tokio::time::sleep(refuse_for).await;
        TcpListener::bind(addr).await.expect("rebind IMDS")
    };
    serve(listener, state, "imds").await
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, server: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        {
            let mut s = state.lock().unwrap();
            if server == "imds" && s.scenario.ttl_is_hop_limit {
                s.settle();
                let hops = s.effective_hop_limit as u32;
                let sock = socket2::SockRef::from(&stream);
                let _ = if stream.local_addr().map(|a| a.is_ipv6()).unwrap_or(false) {
                    sock.set_unicast_hops_v6(hops)
                } else {
                    sock.set_ttl(hops)
                };
            }
        }
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone(), server));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<String>) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body.into())))
        .unwrap()
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<State>>, server: &'static str) -> Result<Reply, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let params = if server == "ec2" { parse_form(&String::from_utf8_lossy(&body)) } else { Vec::new() };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let entry = Logged {
        server,
        method: method.to_string(),
        path: path.clone(),
        action: param("Action").unwrap_or_default(),
        dry_run: param("DryRun").as_deref() == Some("true"),
        params: params.clone(),
        at_ms: 0,
    };
    if server == "imds" {
        state.lock().unwrap().record(entry);
        return Ok(imds(&parts, &method, &path, &state).await);
    }
    let delay = state.lock().unwrap().scenario.ec2_delay;
    tokio::time::sleep(delay).await;
    Ok(ec2(&parts, &params, &state, entry))
}

const TEXT: &str = "text/plain";

async fn imds(parts: &hyper::http::request::Parts, method: &Method, path: &str, state: &Arc<Mutex<State>>) -> Reply {
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    if header("x-forwarded-for").is_some() {
        return reply(403, TEXT, "Forbidden");
    }
    if state.lock().unwrap().options.http_endpoint == Some("disabled") {
        return reply(403, TEXT, "Forbidden");
    }
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return reply(405, TEXT, "Method Not Allowed");
        }
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").and_then(|t| t.parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
            return reply(400, TEXT, "Bad Request");
        };
        if state.lock().unwrap().scenario.token_never_answers {
            std::future::pending::<()>().await;
        }
        let mut s = state.lock().unwrap();
        let token = s.secret("TOKEN");
        s.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        let mut r = reply(200, TEXT, token);
        r.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string().parse().unwrap());
        return r;
    }
    if method != Method::GET {
        return reply(405, TEXT, "Method Not Allowed");
    }
    let mut s = state.lock().unwrap();
    let valid = header("x-aws-ec2-metadata-token")
        .and_then(|t| s.tokens.get(&t).copied())
        .is_some_and(|expires| Instant::now() < expires);
    if !valid {
        return reply(401, TEXT, "Unauthorized");
    }
    let id = s.scenario.instance_id.clone();
    let creds_prefix = "/latest/meta-data/iam/security-credentials/";
    match path {
        "/latest/meta-data/instance-id" => reply(200, TEXT, id.as_str()),
        "/latest/meta-data/placement/region" => reply(200, TEXT, REGION),
        "/latest/meta-data/placement/availability-zone" => reply(200, TEXT, format!("{REGION}a")),
        "/latest/dynamic/instance-identity/document" => reply(
            200,
            "application/json",
            format!(
                r#"{{"accountId":"{ACCOUNT}","architecture":"x86_64","availabilityZone":"{REGION}a","imageId":"ami-0123456789abcdef0","instanceId":"{id}","instanceType":"t3.micro","privateIp":"10.0.0.10","region":"{REGION}","version":"2017-09-30"}}"#
            ),
        ),
        p if p == creds_prefix && s.scenario.role_attached => reply(200, TEXT, ROLE),
        p if p.starts_with(creds_prefix) && s.scenario.role_attached && p[creds_prefix.len()..] == *ROLE => {
            if s.scenario.malformed_credentials {
                return reply(200, TEXT, "{\"Code\": \"Success\", \"AccessKeyId\": ");
            }
            let key = format!("ASIA{}", s.secret("KEY"));
            let secret = s.secret("SECRET");
            let session = s.secret("SESSION");
            s.issued_keys.push((key.clone(), secret.clone()));
            s.sessions.push(session.clone());
            let expires = SystemTime::now() + Duration::from_secs(3600);
            reply(
                200,
                TEXT,
                format!(
                    r#"{{"Code":"Success","LastUpdated":"{}","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"{secret}","Token":"{session}","Expiration":"{}"}}"#,
                    rfc3339(SystemTime::now()),
                    rfc3339(expires)
                ),
            )
        }
        _ => reply(404, "text/html", "<html><body><h1>404 - Not Found</h1></body></html>"),
    }
}

fn ec2_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>sim-request</RequestID></Response>"
        ),
    )
}

/// The access key in a SigV4 Authorization header, if its scope is this region's ec2.
fn signed_key(auth: &str) -> Option<String> {
    let credential = auth.strip_prefix("AWS4-HMAC-SHA256 ")?.split(", ").find_map(|p| p.strip_prefix("Credential="))?;
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, _date, region, "ec2", "aws4_request"] if *region == REGION => Some(key.to_string()),
        _ => None,
    }
}

fn ec2(
    parts: &hyper::http::request::Parts,
    params: &[(String, String)],
    state: &Arc<Mutex<State>>,
    entry: Logged,
) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut s = state.lock().unwrap();
    s.settle();
    s.record(entry);
    let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let session = parts.headers.get("x-amz-security-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    // A static key signs alone; a role key must come with the session token issued beside it.
    let known = signed_key(auth).is_some_and(|key| {
        s.scenario.static_keys.contains(&key)
            || (s.issued_keys.iter().any(|(k, _)| *k == key) && s.sessions.iter().any(|t| t == session))
    });
    if !known {
        return ec2_error(401, "AuthFailure", "AWS was not able to validate the provided access credentials");
    }
    if s.throttled < s.scenario.throttle_first {
        s.throttled += 1;
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if s.errored < s.scenario.server_error_first {
        s.errored += 1;
        return ec2_error(500, "InternalError", "An internal error has occurred");
    }
    let action = param("Action").unwrap_or("");
    let id = param("InstanceId.1").or(param("InstanceId")).unwrap_or("");
    let dry_run = param("DryRun") == Some("true");
    if !matches!(action, "DescribeInstances" | "ModifyInstanceMetadataOptions") {
        return ec2_error(400, "InvalidAction", "The action is not valid for this web service.");
    }
    let well_formed =
        id.strip_prefix("i-").is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed {
        return ec2_error(400, "InvalidInstanceID.Malformed", &format!("Invalid id: \"{id}\""));
    }
    if id != s.scenario.instance_id {
        return ec2_error(400, "InvalidInstanceID.NotFound", &format!("The instance ID '{id}' does not exist"));
    }
    let authorized = !s.scenario.unauthorized.contains(&action);
    if dry_run {
        return if authorized {
            ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
        } else {
            ec2_error(403, "UnauthorizedOperation", "You are not authorized to perform this operation.")
        };
    }
    if !authorized {
        return ec2_error(403, "UnauthorizedOperation", "You are not authorized to perform this operation.");
    }
    s.settle();
    if action == "DescribeInstances" {
        if s.scenario.malformed_describe {
            return reply(
                200,
                "text/xml",
                format!(
                    "<DescribeInstancesResponse><reservationSet><item><instancesSet><item><instanceId>{id}</instanceId><metadataOptions><httpPutResponseHopLimit>two</httpPutResponseHopLimit>"
                ),
            );
        }
        return reply(
            200,
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><reservationSet><item><reservationId>r-0123456789abcdef0</reservationId><ownerId>{ACCOUNT}</ownerId><groupSet/><instancesSet><item><instanceId>{id}</instanceId><instanceState><code>16</code><name>running</name></instanceState>{}</item></instancesSet></item></reservationSet></DescribeInstancesResponse>",
                options_xml("metadataOptions", &s)
            ),
        );
    }
    // ModifyInstanceMetadataOptions, with EC2's validation; fields not given are kept.
    let mut next = s.options.clone();
    if let Some(v) = param("HttpPutResponseHopLimit") {
        match v.parse::<i64>() {
            Ok(n) if (1..=64).contains(&n) => next.hop_limit = Some(n),
            _ => {
                return ec2_error(
                    400,
                    "InvalidParameterValue",
                    &format!("The HttpPutResponseHopLimit '{v}' is not valid. Specify a value between 1 and 64."),
                );
            }
        }
    }
    for (name, slot, allowed) in [
        ("HttpTokens", &mut next.http_tokens, &["optional", "required"][..]),
        ("HttpEndpoint", &mut next.http_endpoint, &["enabled", "disabled"][..]),
        ("HttpProtocolIpv6", &mut next.ipv6, &["enabled", "disabled"][..]),
        ("InstanceMetadataTags", &mut next.tags, &["enabled", "disabled"][..]),
    ] {
        if let Some(v) = param(name) {
            match allowed.iter().find(|a| **a == v) {
                Some(a) => *slot = Some(a),
                None => {
                    return ec2_error(
                        400,
                        "InvalidParameterValue",
                        &format!("Value ({v}) for parameter {name} is invalid."),
                    );
                }
            }
        }
    }
    s.options = next;
    s.applied_at = Some(Instant::now() + s.scenario.pending_for);
    s.last_apply = s.applied_at;
    reply(
        200,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ModifyInstanceMetadataOptionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><instanceId>{id}</instanceId>{}</ModifyInstanceMetadataOptionsResponse>",
            options_xml("instanceMetadataOptions", &s)
        ),
    )
}

fn options_xml(tag: &str, s: &State) -> String {
    let o = &s.options;
    let state = if s.applied_at.is_some() { "pending" } else { "applied" };
    let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
    format!(
        "<{tag}><state>{state}</state>{}{}{}{}{}</{tag}>",
        field("httpTokens", o.http_tokens.map(str::to_string)),
        field("httpPutResponseHopLimit", o.hop_limit.map(|h| h.to_string())),
        field("httpEndpoint", o.http_endpoint.map(str::to_string)),
        field("httpProtocolIpv6", o.ipv6.map(str::to_string)),
        field("instanceMetadataTags", o.tags.map(str::to_string)),
    )
}

fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `2026-11-22T13:00:00Z`, without a date crate.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
