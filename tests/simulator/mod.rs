//! A simulated EC2 account on loopback: an IMDSv2 server for one instance (the agent's own) and an EC2 Query
//! API server for every instance of the account, with EC2's shared per-account request budget (token
//! buckets), SigV4 signatures verified (HMAC, timestamp, session token), faults chosen per scenario, and a
//! log of every request, throttled ones included, for exact counts. Test-only: never part of the shipped
//! binary.
//!
//! By concern: `scenario.rs` holds what a test asks for (`Scenario`, each side's faults); this file what a
//! test sees (`Simulator`, the request log, the fleets of the benchmarks); `account.rs` the account's state (instances, buckets, defaults, the
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
#[path = "../ec2_model.rs"]
mod model;
mod org;
mod scenario;
mod server;
mod sigv4;
mod templates;
mod wire;

pub use account::*;
pub use scenario::*;
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
    /// The member account the request acted in (its credentials an assumed role's); `None`: this account.
    pub account: Option<String>,
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
    /// The member account an assumed role's credentials act in; `None`: this account (the instance role's).
    account: Option<String>,
}

struct State {
    /// The scenario as given; a run never changes it (what a fault moves is counted below).
    scenario: Scenario,
    /// The organization's member accounts, by id: each its instances and its own budget.
    members: BTreeMap<String, Account>,
    /// EC2's clock ahead of the agent's: `Ec2Fault::ClockAhead`, moved by `Ec2Fault::SkewKeepsMoving`.
    clock_ahead: Duration,
    /// A modify's answer has been lost (`Ec2Fault::LoseFirstModifyAnswer`).
    lost_modify_answer: bool,
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
    /// A change has been taken (for `Ec2Fault::RefuseReadsAfterModify`).
    modified: bool,
    /// Requests that have arrived, answered or not (a hung region's are never answered, so never logged).
    arrived: usize,
}

impl State {
    fn new(scenario: Scenario) -> Self {
        let now = Instant::now();
        State {
            account: Account::new(&scenario),
            members: scenario.organization.iter().flatten().map(|m| (m.id.clone(), Account::new(&scenario))).collect(),
            clock_ahead: scenario
                .ec2(|f| if let Ec2Fault::ClockAhead(d) = f { Some(*d) } else { None })
                .unwrap_or_default(),
            lost_modify_answer: false,
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

    /// The member account a request's signing key acts in (an assumed role's), read from its Authorization
    /// header before the signature is checked; `None`: this account.
    fn member_of(&self, parts: &hyper::http::request::Parts) -> Option<String> {
        let auth = parts.headers.get("authorization")?.to_str().ok()?;
        let key = auth.split("Credential=").nth(1)?.split('/').next()?;
        self.issued.iter().find(|i| i.key == key)?.account.clone()
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
                    (
                        s.scenario
                            .imds(|f| if let ImdsFault::RefuseFor(d) = f { Some(*d) } else { None })
                            .unwrap_or_default(),
                        s.scenario.extra_imds.clone(),
                        s.scenario.ec2_tls.clone(),
                    )
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

    /// Back to the scenario's first state (for repeated runs): the account, every fault's count and what a
    /// fault moved (a skew's clock, a lost answer already lost), the clock the log counts from, the log and the
    /// arrivals. What was handed out (tokens, role credentials) stays valid and in `secrets()`, as
    /// on a real instance, and new secrets stay unique.
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        let mut fresh = State::new(s.scenario.clone());
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
            // STS and Organizations, for the org-wide commands, are served beside EC2.
            ("AWS_ENDPOINT_URL_STS", self.ec2_url.clone()),
            ("AWS_ENDPOINT_URL_ORGANIZATIONS", self.ec2_url.clone()),
            ("AWS_ENDPOINT_URL_AUTO_SCALING", self.ec2_url.clone()),
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

    /// An instance's hop limit as a member account holds it (applied or not).
    #[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests use it; the demo's binary does not"))]
    pub fn hop_limit_in(&self, account: &str, id: &str) -> Option<i64> {
        let s = self.state.lock().unwrap();
        s.members.get(account)?.instances.get(id)?.options.hop_limit
    }

    /// A launch template of this account, as it is now.
    #[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests use it; the demo's binary does not"))]
    pub fn template(&self, id: &str) -> Template {
        self.state.lock().unwrap().account.templates[id].clone()
    }

    /// A launch template of a member account, as it is now.
    #[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests use it; the demo's binary does not"))]
    pub fn template_in(&self, account: &str, id: &str) -> Template {
        self.state.lock().unwrap().members[account].templates[id].clone()
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
    /// When the last instance of the account (and of every member account) turned applied with `hop_limit`;
    /// `None` while any is not.
    pub fn all_applied_at_ms(&self, hop_limit: i64) -> Option<u64> {
        let mut guard = self.state.lock().unwrap();
        let s = &mut *guard;
        let now = Instant::now();
        let started = s.started;
        let mut last = 0;
        for account in std::iter::once(&mut s.account).chain(s.members.values_mut()) {
            account.settle(now);
            for i in account.instances.values() {
                if i.options.hop_limit != Some(hop_limit) || i.applied_at.is_some() {
                    return None;
                }
                last = last.max(i.last_apply.map_or(0, |at| at.duration_since(started).as_millis() as u64));
            }
        }
        Some(last)
    }

    /// How many instances, of the account and every member account, are applied with `hop_limit`.
    pub fn applied_count(&self, hop_limit: i64) -> usize {
        let mut guard = self.state.lock().unwrap();
        let s = &mut *guard;
        let now = Instant::now();
        let mut n = 0;
        for account in std::iter::once(&mut s.account).chain(s.members.values_mut()) {
            account.settle(now);
            n += account
                .instances
                .values()
                .filter(|i| i.options.hop_limit == Some(hop_limit) && i.applied_at.is_none())
                .count();
        }
        n
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
