//! A simulated EC2 account on loopback: an IMDSv2 server for one instance (the agent's own) and an EC2 Query
//! API server for every instance of the account, with EC2's shared per-account request budget (token
//! buckets), SigV4 signatures verified (HMAC, timestamp, session token), faults chosen per scenario, and a
//! log of every request, throttled ones included, for exact counts. Test-only: never part of the shipped
//! binary.
//!
//! By concern: this file holds what a test sees (`Scenario` and its faults, `Simulator`, the request log,
//! the fleets of the benchmarks); `account.rs` the account's state (instances, buckets, defaults, the
//! selection), plain data with methods that take the time, unit-tested apart from the wire; `server.rs` the
//! HTTP servers and the dispatch; `imds.rs` and `ec2.rs` each side's answers (EC2 per action); `sigv4.rs` the
//! signature check; `wire.rs` the formats (XML escaping, forms, dates).

use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

mod account;
mod ec2;
mod imds;
mod server;
mod sigv4;
mod wire;

pub use account::*;
// The tests use it; the simulated-instance binary does not.
#[allow(unused_imports)]
pub use ec2::ENCODED;
use ec2::*;
use imds::*;
use server::*;
use sigv4::*;
use wire::*;

pub const INSTANCE_ID: &str = "i-0123456789abcdef0";
pub const REGION: &str = "us-west-2";
pub const ROLE: &str = "sim-instance-role";
pub const ACCOUNT: &str = "123456789012";
/// Every secret the simulator hands out starts with this, so a test can search output for it.
pub const SECRET_MARK: &str = "SIMSECRET";
/// The static credentials tests sign with when they bypass the instance role.
pub const STATIC_KEY: &str = "AKIASIMSECRETSTATIC01";
pub const STATIC_SECRET: &str = "SIMSECRETstaticSecretKey0000000000000001";

#[derive(Debug, Clone, PartialEq, Eq)]
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

/// EC2's per-account token buckets (the EC2 developer guide, "Request throttling"): `burst` tokens, refilled
/// at `rate` a second. DescribeInstances spends the non-mutating bucket, ModifyInstanceMetadataOptions its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Buckets {
    pub describe: (f64, f64),
    pub modify: (f64, f64),
    /// ModifyInstanceMetadataDefaults' own small bucket (Get spends the non-mutating one).
    pub defaults: (f64, f64),
    /// Refill runs this many times faster than real time, and a change's pending time as many times
    /// shorter, so that large runs stay short. The agents' own waits do not scale: a scaled run is gentler
    /// on the agents than the real account would be.
    pub time_scale: f64,
}

impl Buckets {
    pub const DOCUMENTED: Buckets =
        Buckets { describe: (100.0, 20.0), modify: (100.0, 5.0), defaults: (2.0, 2.0), time_scale: 1.0 };
}

/// One more instance of the account, for fleet-scale scenarios.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub id: String,
    pub region: &'static str,
    pub tags: Vec<(String, String)>,
    /// `running` or `stopped`.
    pub state: &'static str,
    pub options: Options,
}

/// What the simulated account is and which faults it shows.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The agent's own instance: IMDS answers for it.
    pub options: Options,
    /// How many more instances the account holds, each with `options`: `i-1000000000000000N`.
    pub more_instances: usize,
    /// More instances, each as given (regions, tags, states).
    pub instances: Vec<InstanceSpec>,
    /// The regions DescribeRegions lists as enabled for the account (the instances' regions are added).
    pub regions: Vec<&'static str>,
    /// Regions whose account-level metadata defaults an AWS Organizations declarative policy manages.
    pub defaults_by_policy: Vec<&'static str>,
    /// How long a change stays `pending` before it is `applied`.
    pub pending_for: Duration,
    pub pending_forever: bool,
    pub role_attached: bool,
    /// (access key, secret key) pairs the EC2 side accepts besides the role's.
    pub static_keys: Vec<(String, String)>,
    /// EC2 actions answered with UnauthorizedOperation (with an encoded authorization message).
    pub unauthorized: Vec<&'static str>,
    /// How the UnauthorizedOperation message names the policy that refused ("with an explicit deny in a
    /// service control policy", "because no session policy allows the ec2:X action", ...); by default no
    /// identity-based policy allows the action.
    pub refused_by: Option<&'static str>,
    /// Instances whose ModifyInstanceMetadataOptions answers UnauthorizedOperation (a tag-conditioned policy).
    pub unauthorized_instances: Vec<String>,
    /// A policy cap on the hop limit a Modify may set (as the shipped policy's condition or an SCP).
    pub policy_max_hop_limit: Option<i64>,
    pub buckets: Option<Buckets>,
    pub throttle_first: usize,
    /// These EC2 requests (0-based, counting those that passed the signature check) answer
    /// RequestLimitExceeded: throttling at a chosen call site.
    pub throttle_requests: Vec<usize>,
    pub server_error_first: usize,
    /// The first modify is carried out, but answered with a 500, as when the answer is lost on the way.
    pub lose_first_modify_answer: bool,
    pub ec2_delay: Duration,
    pub imds_refuse_for: Duration,
    /// The token answer comes after this long.
    pub token_delay: Duration,
    /// The first N IMDS reads answer 429.
    pub imds_throttle_first: usize,
    /// The first N IMDS reads answer a 500 page that echoes the request, token header included.
    pub imds_echo_500_first: usize,
    /// The simulator's clock runs this far ahead of the agent's: its signatures look expired.
    pub clock_ahead: Duration,
    /// The instance EC2 knows; another id is NotFound.
    pub instance_id: String,
    /// Set IP_TTL / IPV6_UNICAST_HOPS of each IMDS connection to the applied hop limit, as IMDS does.
    pub ttl_is_hop_limit: bool,
    /// More addresses the IMDS side listens on (fd00:ec2::254 beside 169.254.169.254).
    pub extra_imds: Vec<SocketAddr>,
    /// Serve EC2 over HTTPS with this certificate chain and key (PEM files), as EC2 is served.
    pub ec2_tls: Option<(String, String)>,
    /// Each RequestExpired answer moves the simulator's clock another hour ahead: a skew that does not go
    /// away however the agent corrects for it.
    pub skew_keeps_moving: bool,
    /// The first N answers to ModifyInstanceMetadataOptions (carried out) and to DescribeInstances are cut
    /// off mid-body: the connection closes before the length the headers promised.
    pub cut_modify_answers: usize,
    pub cut_describe_answers: usize,
    /// Requests signed for these regions are never answered.
    pub hang_regions: Vec<&'static str>,
    /// These actions are always answered RequestLimitExceeded.
    pub throttle_actions: Vec<&'static str>,
    /// An instance whose change EC2 took is terminated (its change never applies).
    pub terminate_on_modify: bool,
    /// After the first change EC2 took, every DescribeInstances is refused with this code (AuthFailure,
    /// ExpiredToken): the accepted change cannot be read back.
    pub refuse_reads_after_modify: Option<&'static str>,
    /// Every instance of the account gets an IMDS of its own on loopback (`Simulator::imds_urls`), answering
    /// for it (and, with `ttl_is_hop_limit`, with its hop limit as TTL): a storm of agents that each sense
    /// their own instance, as on EC2.
    pub imds_per_instance: bool,
    /// How EC2 answers wrongly, if it does: one fault at a time.
    pub ec2_fault: Option<Ec2Fault>,
    /// How IMDS answers wrongly, if it does: one fault at a time.
    pub imds_fault: Option<ImdsFault>,
}

/// How EC2 answers wrongly, when a scenario says it does: one fault at a time, each replacing the answers it
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests choose faults; the demo's binary does not"))]
pub enum Ec2Fault {
    /// Every call: this status and an HTML page that echoes the request, headers included.
    EchoErrorPage(u16),
    /// Every call: 200 and a body that is not XML and echoes the request.
    EchoOkNotXml,
    /// Every call: a 500 of this many bytes of garbage.
    HugeAnswer(usize),
    /// Every signed call: refused (400 InvalidRequest) with the signing access key id as its request id, in
    /// the header and in the XML.
    EchoRequestId,
    /// Every signed call: an EC2 error whose Message repeats the request.
    EchoInMessage,
    /// UnauthorizedOperation carries the request's access key id, ten times over, as its encoded message.
    EchoEncodedMessage,
    /// DescribeInstances: a hop limit of "two" in a document that never ends.
    MalformedDescribe,
    /// DescribeInstances cut short: `<DescribeInstancesResponse><reservationSet><item>`.
    TruncatedDescribe,
    /// DescribeInstances carries no metadataOptions at all.
    NoMetadataOptions,
    /// DescribeInstances reports HttpTokens as an echo of the request with 200,000 characters more, and the
    /// instance state name as a line break and a forged table row.
    EchoInEnums,
    /// Paged DescribeInstances answers with the page tokens A, B, A, B, ...: a cycle.
    PageTokenCycle,
    /// DescribeRegions answers 200 with HTML.
    RegionsGarbage,
    /// DescribeRegions lists no region.
    NoRegions,
}

/// How IMDS answers wrongly, when a scenario says it does: one fault at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests choose faults; the demo's binary does not"))]
pub enum ImdsFault {
    /// The token request is never answered (the answer dies on the way, as with a hop limit too low).
    TokenNeverAnswers,
    /// The instance id and region are answered with this (a captive portal's page).
    GarbageIdentity(&'static str),
    /// The role's credentials document is cut short.
    MalformedCredentials,
    /// The role's credentials are served already expired; EC2 answers RequestExpired to them.
    ExpiredCredentials,
    /// The role-credentials document answers a 500 page that echoes the request, its token header included.
    CredentialsEcho500,
    /// Every answer is chunked (`Transfer-Encoding: chunked`, in two chunks), as HTTP/1.1 allows.
    ChunkedAnswers,
    /// Every answer is framed by its `Content-Length` on a connection IMDS keeps open, whatever the request's
    /// `Connection: close` asked.
    KeepsConnectionsOpen,
    /// The token answer's body is a token, a line break and a header (`X-Injected: yes`), framed by its length.
    TokenWithHeader,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            options: Options::default(),
            more_instances: 0,
            instances: Vec::new(),
            regions: vec![REGION, "us-east-1", "eu-west-1"],
            defaults_by_policy: Vec::new(),
            pending_for: Duration::from_millis(300),
            pending_forever: false,
            role_attached: true,
            static_keys: vec![(STATIC_KEY.into(), STATIC_SECRET.into())],
            unauthorized: Vec::new(),
            refused_by: None,
            unauthorized_instances: Vec::new(),
            policy_max_hop_limit: None,
            buckets: None,
            throttle_first: 0,
            throttle_requests: Vec::new(),
            server_error_first: 0,
            lose_first_modify_answer: false,
            ec2_delay: Duration::ZERO,
            imds_refuse_for: Duration::ZERO,
            token_delay: Duration::ZERO,
            imds_throttle_first: 0,
            imds_echo_500_first: 0,
            clock_ahead: Duration::ZERO,
            instance_id: INSTANCE_ID.into(),
            ttl_is_hop_limit: false,
            extra_imds: Vec::new(),
            ec2_tls: None,
            skew_keeps_moving: false,
            cut_modify_answers: 0,
            cut_describe_answers: 0,
            hang_regions: Vec::new(),
            throttle_actions: Vec::new(),
            terminate_on_modify: false,
            refuse_reads_after_modify: None,
            imds_per_instance: false,
            ec2_fault: None,
            imds_fault: None,
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
    /// The HTTP status of the answer.
    pub status: u16,
    /// The request came through a proxy (an absolute-form request line).
    pub via_proxy: bool,
    /// Milliseconds since the simulator started.
    pub at_ms: u64,
    /// The token lifetime a PUT /latest/api/token asked for (X-aws-ec2-metadata-token-ttl-seconds).
    pub token_ttl: Option<u64>,
    /// The request carried an `X-Injected` header: text IMDS answered was written into it.
    pub injected: bool,
}

impl Logged {
    #[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests use it; the demo's binary does not"))]
    pub fn throttled(&self) -> bool {
        self.status == 503 && self.server == "ec2"
    }

    pub fn instance(&self) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == "InstanceId" || k == "InstanceId.1").map(|(_, v)| v.as_str())
    }
}

/// The n-th instance of a benchmark fleet in us-west-2: even ones tagged team=web at hop limit 1 (to change),
/// odd ones untagged at hop limit 2 (compliant).
pub fn fleet_instance(n: usize) -> InstanceSpec {
    let web = n % 2 == 0;
    InstanceSpec {
        id: format!("i-3{n:016x}"),
        region: REGION,
        tags: if web { vec![("team".into(), "web".into())] } else { Vec::new() },
        state: "running",
        options: Options { hop_limit: Some(if web { 1 } else { 2 }), ..Options::default() },
    }
}

/// The README's and the demo's fleet: web instances in two regions, one stopped, one with a higher hop limit,
/// one with its endpoint disabled, and one of another team.
#[cfg_attr(test, allow(dead_code, reason = "the demo's binary uses it; the tests do not"))]
pub fn demo_fleet() -> Vec<InstanceSpec> {
    let spec = |n: u32, region, team: &str, state, hop, endpoint| InstanceSpec {
        id: format!("i-0a1b2c3d4e5f6{n:04}"),
        region,
        tags: vec![("team".into(), team.into())],
        state,
        options: Options { hop_limit: Some(hop), http_endpoint: Some(endpoint), ..Options::default() },
    };
    vec![
        spec(1, REGION, "web", "running", 1, "enabled"),
        spec(2, REGION, "web", "running", 2, "enabled"),
        spec(3, REGION, "web", "stopped", 1, "enabled"),
        spec(4, REGION, "web", "running", 3, "enabled"),
        spec(5, REGION, "batch", "running", 1, "enabled"),
        spec(6, "eu-west-1", "web", "running", 1, "disabled"),
    ]
}

pub fn more_instance_id(n: usize) -> String {
    format!("i-1{n:016x}")
}

struct Issued {
    key: String,
    secret: String,
    session: String,
}

struct State {
    /// The scenario as given, for `reset`: a run may move the scenario's own state (a skew's clock, a lost
    /// answer already lost).
    first: Scenario,
    scenario: Scenario,
    account: Account,
    tokens: HashMap<String, Instant>,
    issued: Vec<Issued>,
    throttled: usize,
    errored: usize,
    imds_reads: usize,
    /// EC2 requests that passed the signature check.
    signed: usize,
    log: Vec<Logged>,
    started: Instant,
    counter: u64,
    /// Answers cut off so far, per action.
    cut: HashMap<String, usize>,
    /// A change has been taken (for `refuse_reads_after_modify`).
    modified: bool,
    /// Requests that have arrived, answered or not (a hung region's are never answered, so never logged).
    arrived: usize,
}

impl State {
    fn new(scenario: Scenario) -> Self {
        let now = Instant::now();
        State {
            first: scenario.clone(),
            account: Account::new(&scenario),
            scenario,
            tokens: HashMap::new(),
            issued: Vec::new(),
            throttled: 0,
            errored: 0,
            imds_reads: 0,
            signed: 0,
            log: Vec::new(),
            started: now,
            counter: 0,
            cut: HashMap::new(),
            modified: false,
            arrived: 0,
        }
    }

    /// Logs a request at the time it is answered, under the lock that decides the answer.
    fn record(&mut self, mut entry: Logged, status: u16) {
        entry.at_ms = self.started.elapsed().as_millis() as u64;
        entry.status = status;
        self.log.push(entry);
    }

    fn secret(&mut self, kind: &str) -> String {
        self.counter += 1;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        format!("{SECRET_MARK}{kind}{:08x}{:04}", nanos, self.counter)
    }

    fn own(&mut self) -> &mut Instance {
        let id = self.scenario.instance_id.clone();
        self.account.instances.get_mut(&id).expect("the agent's own instance")
    }

    /// The instance an IMDS answers for: its own (`imds_per_instance`), else the agent's.
    fn imds_instance(&mut self, id: Option<&str>) -> &mut Instance {
        match id {
            Some(id) => self.account.instances.get_mut(id).expect("an instance of the account"),
            None => self.own(),
        }
    }
}

pub struct Simulator {
    pub imds_url: String,
    pub ec2_url: String,
    /// (instance id, its IMDS's URL) with `imds_per_instance`.
    #[cfg_attr(
        test,
        allow(dead_code, reason = "the benchmarks' simulated-instance binary reads it; the tests do not")
    )]
    pub imds_urls: Vec<(String, String)>,
    state: Arc<Mutex<State>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Simulator {
    pub fn start_on(imds_addr: SocketAddr, ec2_addr: SocketAddr, scenario: Scenario) -> Self {
        let state = Arc::new(Mutex::new(State::new(scenario)));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (urls_tx, urls_rx) = std::sync::mpsc::channel();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let imds = std::net::TcpListener::bind(imds_addr).expect("bind IMDS");
                let ec2 = TcpListener::bind(ec2_addr).await.expect("bind EC2");
                let imds_local = imds.local_addr().unwrap();
                addr_tx.send((imds_local, ec2.local_addr().unwrap())).unwrap();
                let (refuse_for, extra, tls) = {
                    let s = st.lock().unwrap();
                    (s.scenario.imds_refuse_for, s.scenario.extra_imds.clone(), s.scenario.ec2_tls.clone())
                };
                tokio::spawn(serve_imds(imds, imds_local, refuse_for, st.clone()));
                for addr in extra {
                    let listener = TcpListener::bind(addr).await.expect("bind extra IMDS address");
                    tokio::spawn(serve(listener, st.clone(), "imds", None));
                }
                let per_instance: Vec<String> = {
                    let s = st.lock().unwrap();
                    if s.scenario.imds_per_instance {
                        s.account.instances.keys().cloned().collect()
                    } else {
                        Vec::new()
                    }
                };
                let mut urls = Vec::new();
                for id in per_instance {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind an instance's IMDS");
                    urls.push((id.clone(), format!("http://{}", listener.local_addr().unwrap())));
                    tokio::spawn(serve(listener, st.clone(), "imds", Some(Arc::from(id.as_str()))));
                }
                urls_tx.send(urls).unwrap();
                match tls {
                    Some((cert, key)) => tokio::spawn(serve_tls(ec2, tls_acceptor(&cert, &key), st.clone())),
                    None => tokio::spawn(serve(ec2, st.clone(), "ec2", None)),
                };
                let _ = shutdown_rx.await;
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        let (imds_local, ec2_local) = addr_rx.recv().expect("simulator started");
        let ec2_scheme = if state.lock().unwrap().scenario.ec2_tls.is_some() { "https" } else { "http" };
        Simulator {
            imds_urls: urls_rx.recv().expect("the instances' IMDS started"),
            imds_url: format!("http://{}", url_host(imds_local)),
            ec2_url: format!("{ec2_scheme}://{}", url_host(ec2_local)),
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Back to the scenario's first state (for repeated runs): the account, every fault's count, what a run moved
    /// in the scenario itself (a skew's clock, a lost answer already lost), the clock the log counts from, the
    /// log and the arrivals. What was handed out (tokens, role credentials) stays valid and in `secrets()`, as
    /// on a real instance, and new secrets stay unique.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        let mut fresh = State::new(s.first.clone());
        fresh.tokens = std::mem::take(&mut s.tokens);
        fresh.issued = std::mem::take(&mut s.issued);
        fresh.counter = s.counter;
        *s = fresh;
    }

    /// Empties the request log and nothing else (the account keeps its state).
    pub fn reset_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    /// Somebody else set the agent's own instance's hop limit (a drift), in effect at once.
    pub fn set_hop_limit(&self, hop: i64) {
        let mut s = self.state.lock().unwrap();
        let instance = s.own();
        instance.options.hop_limit = Some(hop);
        instance.effective_hop_limit = hop;
        instance.applied_at = None;
    }

    /// Milliseconds since start at which the agent's own instance's last change turned applied, if it has.
    pub fn applied_at_ms(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap();
        let started = s.started;
        s.own().last_apply.map(|at| at.duration_since(started).as_millis() as u64)
    }

    /// The environment a run of the agent needs to use this simulator and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", self.imds_url.clone()),
            ("AWS_ENDPOINT_URL_EC2", self.ec2_url.clone()),
        ]
    }
}

/// What the black-box tests read of a run; the demo's binary reads none of it.
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests use these; the demo's binary does not"))]
impl Simulator {
    /// Starts both servers on 127.0.0.1 in a thread of their own.
    pub fn start(scenario: Scenario) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap(), scenario)
    }

    /// How many requests have arrived, answered or not: a test waits on this for a call that will hang.
    pub fn arrived(&self) -> usize {
        self.state.lock().unwrap().arrived
    }

    /// Session tokens the agent's SDK client asked for (it asks for 300 s); the sensing probes' tokens (60 s,
    /// used at once and only sent back to IMDS) are `probe_requests`.
    pub fn token_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.server == "imds" && r.method == "PUT" && r.token_ttl != Some(60)).count()
    }

    pub fn probe_requests(&self) -> usize {
        self.requests().iter().filter(|r| r.server == "imds" && r.method == "PUT" && r.token_ttl == Some(60)).count()
    }

    /// (state, hop limit, endpoint, tokens) of the agent's own instance, as DescribeInstances would say now.
    pub fn options(&self) -> (String, Option<i64>, Option<&'static str>, Option<&'static str>) {
        let id = self.state.lock().unwrap().scenario.instance_id.clone();
        self.options_of(&id)
    }

    pub fn options_of(&self, id: &str) -> (String, Option<i64>, Option<&'static str>, Option<&'static str>) {
        let mut s = self.state.lock().unwrap();
        s.account.settle(Instant::now());
        let i = &s.account.instances[id];
        (i.state().into(), i.options.hop_limit, i.options.http_endpoint, i.options.http_tokens)
    }

    pub fn effective_hop_limit(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.account.settle(Instant::now());
        s.own().effective_hop_limit
    }

    /// Every secret handed out so far: tokens, access keys, secret keys, session tokens, the static ones.
    pub fn secrets(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut all: Vec<String> = s.tokens.keys().cloned().collect();
        for issued in &s.issued {
            all.extend([issued.key.clone(), issued.secret.clone(), issued.session.clone()]);
        }
        for (key, secret) in &s.scenario.static_keys {
            all.extend([key.clone(), secret.clone()]);
        }
        all
    }
}

/// What the benchmarks read of a run, through the demo's binary; the tests read none of it.
#[cfg_attr(test, allow(dead_code, reason = "the benchmarks' simulated-instance binary uses these; the tests do not"))]
impl Simulator {
    pub fn instance_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().account.instances.keys().cloned().collect()
    }

    /// Milliseconds since start at which the last of all instances turned applied (None while any is not).
    pub fn all_applied_at_ms(&self, hop_limit: i64) -> Option<u64> {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.account.settle(now);
        let started = s.started;
        let mut last = 0;
        for i in s.account.instances.values() {
            if i.options.hop_limit != Some(hop_limit) || i.applied_at.is_some() {
                return None;
            }
            last = last.max(i.last_apply.map_or(0, |at| at.duration_since(started).as_millis() as u64));
        }
        Some(last)
    }

    /// How many instances are applied with `hop_limit`.
    pub fn applied_count(&self, hop_limit: i64) -> usize {
        let mut s = self.state.lock().unwrap();
        s.account.settle(Instant::now());
        s.account
            .instances
            .values()
            .filter(|i| i.options.hop_limit == Some(hop_limit) && i.applied_at.is_none())
            .count()
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.state.lock().unwrap().started.elapsed().as_millis() as u64
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
