//! A simulated EC2 account on loopback: an IMDSv2 server for one instance (the agent's own) and an EC2 Query
//! API server for every instance of the account, with EC2's shared per-account request budget (token
//! buckets), SigV4 signatures verified (HMAC, timestamp, session token), faults chosen per scenario, and a
//! log of every request, throttled ones included, for exact counts. Test-only: never part of the shipped
//! binary.
//!
//! The account's state (`Account`: instances, buckets) is plain data with methods that take the time, so
//! it is unit-tested apart from the wire formats below it.
#![allow(dead_code)]

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
    pub token_never_answers: bool,
    /// The token answer comes after this long.
    pub token_delay: Duration,
    /// The first N IMDS reads answer 429.
    pub imds_throttle_first: usize,
    /// The first N IMDS reads answer a 500 page that echoes the request, token header included.
    pub imds_echo_500_first: usize,
    /// The instance id and region are answered with this (a captive portal's page).
    pub garbage_identity: Option<&'static str>,
    pub malformed_describe: bool,
    /// DescribeInstances cut short: `<DescribeInstancesResponse><reservationSet><item>`.
    pub truncated_describe: bool,
    /// DescribeInstances carries no metadataOptions at all.
    pub no_metadata_options: bool,
    pub malformed_credentials: bool,
    /// The role's credentials are served already expired; EC2 answers RequestExpired to them.
    pub expired_credentials: bool,
    /// EC2 answers every call with this status and an HTML page that echoes the request, headers included.
    pub echo_error_page: Option<u16>,
    /// EC2 answers every call with an EC2 error whose Message repeats the request.
    pub echo_in_message: bool,
    /// EC2 answers every call with 200 and a body that is not XML and echoes the request.
    pub echo_ok_not_xml: bool,
    /// EC2 answers every call with a 500 of this many bytes of garbage.
    pub huge_answer: Option<usize>,
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
    /// The role-credentials document answers a 500 page that echoes the request, its token header included.
    pub credentials_echo_500: bool,
    /// Paged DescribeInstances answers the first page with the page tokens A, B, A, B, ...: a cycle.
    pub page_token_cycle: bool,
    /// DescribeInstances reports HttpTokens as an echo of the request with 200,000 characters more, and the
    /// instance state name as a line break and a forged table row.
    pub echo_in_enums: bool,
    /// Every signed EC2 request is refused (400 InvalidRequest) with the signing access key id as its request
    /// id, in the header and in the XML.
    pub echo_request_id: bool,
    /// UnauthorizedOperation carries the request's access key id and session token as its encoded message.
    pub echo_encoded_message: bool,
    /// The first N answers to ModifyInstanceMetadataOptions (carried out) and to DescribeInstances are cut
    /// off mid-body: the connection closes before the length the headers promised.
    pub cut_modify_answers: usize,
    pub cut_describe_answers: usize,
    /// DescribeRegions answers 200 with HTML; or lists no region.
    pub regions_garbage: bool,
    pub no_regions: bool,
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
            unauthorized_instances: Vec::new(),
            policy_max_hop_limit: None,
            buckets: None,
            throttle_first: 0,
            throttle_requests: Vec::new(),
            server_error_first: 0,
            lose_first_modify_answer: false,
            ec2_delay: Duration::ZERO,
            imds_refuse_for: Duration::ZERO,
            token_never_answers: false,
            token_delay: Duration::ZERO,
            imds_throttle_first: 0,
            imds_echo_500_first: 0,
            garbage_identity: None,
            malformed_describe: false,
            truncated_describe: false,
            no_metadata_options: false,
            malformed_credentials: false,
            expired_credentials: false,
            echo_error_page: None,
            echo_in_message: false,
            echo_ok_not_xml: false,
            huge_answer: None,
            clock_ahead: Duration::ZERO,
            instance_id: INSTANCE_ID.into(),
            ttl_is_hop_limit: false,
            extra_imds: Vec::new(),
            ec2_tls: None,
            skew_keeps_moving: false,
            credentials_echo_500: false,
            page_token_cycle: false,
            echo_in_enums: false,
            echo_request_id: false,
            echo_encoded_message: false,
            cut_modify_answers: 0,
            cut_describe_answers: 0,
            regions_garbage: false,
            no_regions: false,
            hang_regions: Vec::new(),
            throttle_actions: Vec::new(),
            terminate_on_modify: false,
            refuse_reads_after_modify: None,
            imds_per_instance: false,
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
}

impl Logged {
    pub fn throttled(&self) -> bool {
        self.status == 503 && self.server == "ec2"
    }

    pub fn instance(&self) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == "InstanceId" || k == "InstanceId.1").map(|(_, v)| v.as_str())
    }
}

/// One instance's metadata options and the state of its last change.
#[derive(Debug, Clone)]
pub struct Instance {
    pub region: &'static str,
    pub tags: Vec<(String, String)>,
    /// `running` or `stopped`.
    pub run_state: &'static str,
    pub options: Options,
    /// When the last change turns from pending to applied; None when applied.
    pub applied_at: Option<Instant>,
    /// When the last change was (or will be) applied, kept after it was.
    pub last_apply: Option<Instant>,
    /// The hop limit in effect (what IMDS answers with), which changes only once applied.
    pub effective_hop_limit: i64,
}

impl Instance {
    fn new(options: Options) -> Self {
        Instance {
            region: REGION,
            tags: Vec::new(),
            run_state: "running",
            effective_hop_limit: options.hop_limit.unwrap_or(1),
            options,
            applied_at: None,
            last_apply: None,
        }
    }

    fn settle(&mut self, now: Instant, forever: bool) {
        if let Some(at) = self.applied_at {
            if !forever && now >= at {
                self.applied_at = None;
                self.effective_hop_limit = self.options.hop_limit.unwrap_or(1);
            }
        }
    }

    pub fn state(&self) -> &'static str {
        if self.applied_at.is_some() { "pending" } else { "applied" }
    }
}

/// A token bucket: `tokens` of at most `burst`, refilled at `rate` a second.
#[derive(Debug, Clone)]
pub struct Bucket {
    burst: f64,
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn new((burst, rate): (f64, f64), now: Instant) -> Self {
        Bucket { burst, rate, tokens: burst, at: now }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, scale: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate * scale).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The account: its instances and its request budget.
pub struct Account {
    pub instances: BTreeMap<String, Instance>,
    pub pending_for: Duration,
    pub pending_forever: bool,
    pub scale: f64,
    /// EC2's buckets are per account and region: one pair per region, made when first used.
    config: Option<Buckets>,
    buckets: HashMap<String, (Bucket, Bucket, Bucket)>,
    /// The account-level metadata defaults per region (None: no preference), as GetInstanceMetadataDefaults
    /// reports them.
    pub defaults: HashMap<String, Options>,
}

impl Account {
    pub fn new(scenario: &Scenario) -> Self {
        let mut instances = BTreeMap::new();
        instances.insert(scenario.instance_id.clone(), Instance::new(scenario.options.clone()));
        for n in 0..scenario.more_instances {
            instances.insert(more_instance_id(n), Instance::new(scenario.options.clone()));
        }
        for spec in &scenario.instances {
            let instance = Instance {
                region: spec.region,
                tags: spec.tags.clone(),
                run_state: spec.state,
                ..Instance::new(spec.options.clone())
            };
            instances.insert(spec.id.clone(), instance);
        }
        let scale = scenario.buckets.map_or(1.0, |b| b.time_scale);
        Account {
            instances,
            pending_for: scenario.pending_for.div_f64(scale),
            pending_forever: scenario.pending_forever,
            scale,
            config: scenario.buckets,
            buckets: HashMap::new(),
            defaults: HashMap::new(),
        }
    }

    /// Whether the account's budget for `action` in `region` has a token now (and spends it).
    pub fn admit(&mut self, action: &str, region: &str, now: Instant) -> bool {
        let (scale, Some(config)) = (self.scale, self.config) else { return true };
        let (describe, modify, defaults) = self.buckets.entry(region.to_string()).or_insert_with(|| {
            (Bucket::new(config.describe, now), Bucket::new(config.modify, now), Bucket::new(config.defaults, now))
        });
        match action {
            "ModifyInstanceMetadataOptions" => modify.take(now, scale),
            "ModifyInstanceMetadataDefaults" => defaults.take(now, scale),
            _ => describe.take(now, scale),
        }
    }

    pub fn settle(&mut self, now: Instant) {
        let forever = self.pending_forever;
        for instance in self.instances.values_mut() {
            instance.settle(now, forever);
        }
    }

    /// EC2 takes a change: the fields given, the others kept; pending until `pending_for` has passed. A
    /// stopped instance's change is applied when it starts (EC2's API reference): it stays pending here.
    pub fn change(&mut self, id: &str, next: Options, now: Instant) {
        let pending_for = self.pending_for;
        if let Some(instance) = self.instances.get_mut(id) {
            instance.options = next;
            let pending_for = if instance.run_state == "stopped" { UNTIL_STARTED } else { pending_for };
            instance.applied_at = Some(now + pending_for);
            instance.last_apply = instance.applied_at;
        }
    }

    /// The regions DescribeRegions lists: the scenario's and every instance's, each once, sorted.
    pub fn regions(&self, scenario: &Scenario) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = scenario.regions.clone();
        all.extend(self.instances.values().map(|i| i.region));
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// A stopped instance's change waits for a start that no scenario makes.
const UNTIL_STARTED: Duration = Duration::from_secs(365 * 86_400);

/// What DescribeInstances may ask: instance ids, filters (name, values), a page size and where to start.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub ids: Vec<String>,
    pub filters: Vec<(String, Vec<String>)>,
    pub max_results: Option<usize>,
    pub next_token: Option<String>,
}

impl Query {
    fn from_params(params: &[(String, String)]) -> Self {
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let ids = (1..).map_while(|n| param(&format!("InstanceId.{n}"))).collect();
        let filters = (1..)
            .map_while(|n| {
                let name = param(&format!("Filter.{n}.Name"))?;
                Some((name, (1..).map_while(|m| param(&format!("Filter.{n}.Value.{m}"))).collect()))
            })
            .collect();
        Query {
            ids,
            filters,
            max_results: param("MaxResults").and_then(|v| v.parse().ok()),
            next_token: param("NextToken"),
        }
    }
}

/// A filter as EC2 matches it: any of its values; `tag:KEY` on the tag's value, `tag-key` on keys.
fn matches(id: &str, i: &Instance, name: &str, values: &[String]) -> Result<bool, String> {
    let any = |have: Option<String>| have.is_some_and(|h| values.contains(&h));
    Ok(match name {
        "instance-id" => any(Some(id.to_string())),
        "instance-state-name" => any(Some(i.run_state.to_string())),
        "tag-key" => i.tags.iter().any(|(k, _)| values.contains(k)),
        "metadata-options.http-put-response-hop-limit" => any(i.options.hop_limit.map(|h| h.to_string())),
        "metadata-options.http-endpoint" => any(i.options.http_endpoint.map(str::to_string)),
        "metadata-options.http-tokens" => any(i.options.http_tokens.map(str::to_string)),
        tag if tag.starts_with("tag:") => i.tags.iter().any(|(k, v)| k == &tag[4..] && values.contains(v)),
        other => return Err(format!("The filter '{other}' is invalid")),
    })
}

/// The ids DescribeInstances answers with in `region`, and the token of the next page: by id, all of them
/// (each must exist, or the answer is NotFound), or those that pass every filter, a page at a time (EC2:
/// MaxResults 5 to 1000, not together with instance ids).
pub fn select(account: &Account, region: &str, q: &Query) -> Result<(Vec<String>, Option<String>), (String, String)> {
    let invalid = |code: &str, message: String| Err((code.to_string(), message));
    if !q.ids.is_empty() {
        if q.max_results.is_some() {
            return invalid(
                "InvalidParameterCombination",
                "The parameter instancesSet cannot be used with the parameter maxResults".into(),
            );
        }
        let missing: Vec<&str> = q
            .ids
            .iter()
            .filter(|id| account.instances.get(*id).is_none_or(|i| i.region != region))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return invalid(
                "InvalidInstanceID.NotFound",
                format!("The instance IDs '{}' do not exist", missing.join(", ")),
            );
        }
    }
    if let Some(max) = q.max_results {
        if !(5..=1000).contains(&max) {
            return invalid("InvalidParameterValue", format!("Value ( {max} ) for parameter maxResults is invalid"));
        }
    }
    let mut selected = Vec::new();
    for (id, i) in account.instances.iter().filter(|(_, i)| i.region == region) {
        if !q.ids.is_empty() && !q.ids.contains(id) {
            continue;
        }
        let mut all = true;
        for (name, values) in &q.filters {
            all &= matches(id, i, name, values).map_err(|m| ("InvalidParameterValue".to_string(), m))?;
        }
        if all {
            selected.push(id.clone());
        }
    }
    let start: usize = match &q.next_token {
        // The tokens of `page_token_cycle`: the first page again.
        Some(token) if token == "A" || token == "B" => 0,
        Some(token) => {
            token.parse().map_err(|_| ("InvalidParameterValue".to_string(), "Invalid NextToken".to_string()))?
        }
        None => 0,
    };
    let page = q.max_results.unwrap_or(1000);
    let end = (start + page).min(selected.len());
    let next = (end < selected.len()).then(|| end.to_string());
    Ok((selected.get(start..end).unwrap_or_default().to_vec(), next))
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
}

impl State {
    fn new(scenario: Scenario) -> Self {
        let now = Instant::now();
        State {
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
    pub imds_urls: Vec<(String, String)>,
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

    /// Back to the scenario's first state, with an empty request log (for repeated benchmark runs).
    pub fn reset(&self) {
        let mut s = self.state.lock().unwrap();
        s.account = Account::new(&s.scenario);
        s.throttled = 0;
        s.errored = 0;
        s.imds_reads = 0;
        s.signed = 0;
        s.log.clear();
    }

    /// Empties the request log and nothing else (the account keeps its state).
    pub fn reset_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn count(&self, server: &str, what: &str) -> usize {
        self.requests().iter().filter(|r| r.server == server && (r.action == what || r.path == what)).count()
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

    /// Somebody else set the agent's own instance's hop limit (a drift), in effect at once.
    pub fn set_hop_limit(&self, hop: i64) {
        let mut s = self.state.lock().unwrap();
        let instance = s.own();
        instance.options.hop_limit = Some(hop);
        instance.effective_hop_limit = hop;
        instance.applied_at = None;
    }

    pub fn instance_ids(&self) -> Vec<String> {
        self.state.lock().unwrap().account.instances.keys().cloned().collect()
    }

    pub fn effective_hop_limit(&self) -> i64 {
        let mut s = self.state.lock().unwrap();
        s.account.settle(Instant::now());
        s.own().effective_hop_limit
    }

    /// Milliseconds since start at which the agent's own instance's last change turned applied, if it has.
    pub fn applied_at_ms(&self) -> Option<u64> {
        let mut s = self.state.lock().unwrap();
        let started = s.started;
        s.own().last_apply.map(|at| at.duration_since(started).as_millis() as u64)
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
    serve(listener, state, "imds", None).await
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>, server: &'static str, instance: Option<Arc<str>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        {
            let mut s = state.lock().unwrap();
            if server == "imds" && s.scenario.ttl_is_hop_limit {
                s.account.settle(Instant::now());
                let hops = s.imds_instance(instance.as_deref()).effective_hop_limit as u32;
                let sock = socket2::SockRef::from(&stream);
                let _ = if stream.local_addr().map(|a| a.is_ipv6()).unwrap_or(false) {
                    sock.set_unicast_hops_v6(hops)
                } else {
                    sock.set_ttl(hops)
                };
            }
        }
        let state = state.clone();
        let instance = instance.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone(), server, instance.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(cert).expect("certificate file").collect::<Result<_, _>>().expect("PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (state, acceptor) = (state.clone(), acceptor.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let svc = service_fn(move |req| handle(req, state.clone(), "ec2", None));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

/// The request as an error page that echoes it would show it: request line, every header, the body.
fn echo(parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    let mut text = format!("{} {} HTTP/1.1\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(body));
    text
}

/// An answer cut off: its data, then a failure, so the server closes the connection before the length its
/// headers promised (1,000 bytes more).
struct Cut(Option<Bytes>);

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(data) => Ok(hyper::body::Frame::data(data)),
            None => Err(std::io::Error::other("the answer is cut here")),
        }))
    }
}

type Answer = Response<Either<Full<Bytes>, Cut>>;

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    server: &'static str,
    instance: Option<Arc<str>>,
) -> Result<Answer, hyper::Error> {
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
        status: 0,
        via_proxy: parts.uri.authority().is_some(),
        at_ms: 0,
        token_ttl: parts
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    };
    if server == "imds" {
        let (reply, delay) = imds(&parts, &method, &path, &state, instance.as_deref());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        state.lock().unwrap().record(entry, reply.status().as_u16());
        return Ok(reply.map(Either::Left));
    }
    let (delay, hang) = {
        let s = state.lock().unwrap();
        let region = signed_region(&parts);
        (s.scenario.ec2_delay, s.scenario.hang_regions.iter().any(|r| Some(*r) == region.as_deref()))
    };
    tokio::time::sleep(if hang { Duration::from_secs(3600) } else { delay }).await;
    let (reply, cut) = {
        let mut s = state.lock().unwrap();
        // EC2's clock as its answers carry it (`Date`), read when the request arrives.
        let date = aws_smithy_types::DateTime::from(SystemTime::now() + s.scenario.clock_ahead)
            .fmt(aws_smithy_types::date_time::Format::HttpDate)
            .unwrap();
        let mut reply = ec2(&parts, &body, &params, &mut s);
        reply.headers_mut().insert("date", date.parse().unwrap());
        // EC2 names every answer in a header, as the SDK reads it (unless a fault named it already).
        s.counter += 1;
        if !reply.headers().contains_key("x-amzn-requestid") {
            let request_id = format!("5e2a7c3d-0b1f-4e8a-9c6d-{:012x}", s.counter);
            reply.headers_mut().insert("x-amzn-requestid", request_id.parse().unwrap());
        }
        // A cut answer: the headers promise more than the body holds, and the connection closes after it.
        let cut_limit = match entry.action.as_str() {
            "ModifyInstanceMetadataOptions" => s.scenario.cut_modify_answers,
            "DescribeInstances" => s.scenario.cut_describe_answers,
            _ => 0,
        };
        let cuts = s.cut.entry(entry.action.clone()).or_default();
        let cut = reply.status() == StatusCode::OK && *cuts < cut_limit;
        *cuts += usize::from(cut);
        s.record(entry, reply.status().as_u16());
        (reply, cut)
    };
    if !cut {
        return Ok(reply.map(Either::Left));
    }
    let (mut parts, body) = reply.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    parts.headers.insert("content-length", (bytes.len() + 1000).to_string().parse().unwrap());
    Ok(Response::from_parts(parts, Either::Right(Cut(Some(bytes)))))
}

const TEXT: &str = "text/plain";

/// The region of a SigV4 signature's credential scope, if the request carries one.
fn signed_region(parts: &hyper::http::request::Parts) -> Option<String> {
    let auth = parts.headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2).map(str::to_string)
}

/// The IMDS answer, and how long to wait before giving it (`Some(forever)` is a token that never comes).
fn imds(
    parts: &hyper::http::request::Parts,
    method: &Method,
    path: &str,
    state: &Arc<Mutex<State>>,
    instance: Option<&str>,
) -> (Reply, Option<Duration>) {
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut s = state.lock().unwrap();
    if header("x-forwarded-for").is_some() || parts.uri.authority().is_some() {
        return (reply(403, TEXT, "Forbidden"), None);
    }
    if s.imds_instance(instance).options.http_endpoint == Some("disabled") {
        return (reply(403, TEXT, "Forbidden"), None);
    }
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return (reply(405, TEXT, "Method Not Allowed"), None);
        }
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").and_then(|t| t.parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
            return (reply(400, TEXT, "Bad Request"), None);
        };
        if s.scenario.token_never_answers {
            return (reply(200, TEXT, ""), Some(Duration::from_secs(3600)));
        }
        let token = s.secret("TOKEN");
        s.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        let mut r = reply(200, TEXT, token);
        r.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string().parse().unwrap());
        let delay = s.scenario.token_delay;
        return (r, (!delay.is_zero()).then_some(delay));
    }
    if method != Method::GET {
        return (reply(405, TEXT, "Method Not Allowed"), None);
    }
    let given = header("x-aws-ec2-metadata-token");
    let valid = given.as_ref().and_then(|t| s.tokens.get(t).copied()).is_some_and(|expires| Instant::now() < expires);
    // IMDSv1 (no token at all) is answered only where HttpTokens is optional; a bad token never is.
    let v1_allowed = given.is_none() && s.imds_instance(instance).options.http_tokens == Some("optional");
    if !valid && !v1_allowed {
        return (reply(401, TEXT, "Unauthorized"), None);
    }
    s.imds_reads += 1;
    if s.imds_reads <= s.scenario.imds_throttle_first {
        return (reply(429, TEXT, "Too Many Requests"), None);
    }
    if s.imds_reads <= s.scenario.imds_echo_500_first {
        let page =
            format!("<html><body><h1>500 Internal Server Error</h1><pre>{}</pre></body></html>", echo(parts, b""));
        return (reply(500, "text/html", page), None);
    }
    let id = instance.map_or_else(|| s.scenario.instance_id.clone(), str::to_string);
    let creds_prefix = "/latest/meta-data/iam/security-credentials/";
    let answer = match path {
        "/latest/meta-data/instance-id" | "/latest/meta-data/placement/region"
            if s.scenario.garbage_identity.is_some() =>
        {
            reply(200, "text/html", s.scenario.garbage_identity.unwrap())
        }
        "/latest/meta-data/" => reply(200, TEXT, "ami-id\nhostname\niam/\ninstance-id\nplacement/\n"),
        // Instance tags in IMDS: listed only where InstanceMetadataTags is enabled.
        "/latest/meta-data/tags/instance" if s.imds_instance(instance).options.tags == Some("enabled") => {
            reply(200, TEXT, "Name\n")
        }
        "/latest/meta-data/instance-id" => reply(200, TEXT, id.clone()),
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
            if s.scenario.credentials_echo_500 {
                let page = format!(
                    "<html><body><h1>500 Internal Server Error</h1><pre>{}</pre></body></html>",
                    echo(parts, b"")
                );
                return (reply(500, "text/html", page), None);
            }
            if s.scenario.malformed_credentials {
                return (reply(200, TEXT, "{\"Code\": \"Success\", \"AccessKeyId\": "), None);
            }
            let key = format!("ASIA{}", s.secret("KEY"));
            let secret = s.secret("SECRET");
            let session = s.secret("SESSION");
            s.issued.push(Issued { key: key.clone(), secret: secret.clone(), session: session.clone() });
            let now = SystemTime::now();
            let expires = if s.scenario.expired_credentials {
                now - Duration::from_secs(600)
            } else {
                now + Duration::from_secs(3600)
            };
            reply(
                200,
                TEXT,
                format!(
                    r#"{{"Code":"Success","LastUpdated":"{}","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"{secret}","Token":"{session}","Expiration":"{}"}}"#,
                    rfc3339(now - Duration::from_secs(3600)),
                    rfc3339(expires)
                ),
            )
        }
        _ => reply(404, "text/html", "<html><body><h1>404 - Not Found</h1></body></html>"),
    };
    (answer, None)
}

/// An encoded authorization message of the shape EC2 gives: URL-safe base64, hundreds of characters.
pub const ENCODED: &str = "SIMENCODED-UvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA_TkB_yOaGglfIPk5VlDPk4C47bIkprJIoekk6P0K4uGpSSozBfGIy2EJAPnjR_rohtxlB3lex0XEw_yy6yxz4Uk0yGfuBXunJJm_oSHoNrKsFXJu59awr2qxPDjpLK4NFQV7FZmH-UzHQR1xfxRXmyqhAPu7NPpZP-rtJySLdi46tYBfB2WiucHX4PN8RJIb0_ZWTq338UKnJm";

fn ec2_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>5e2a7c3d-0b1f-4e8a-9c6d-7f8e9a0b1c2d</RequestID></Response>",
            xml_escape(message)
        ),
    )
}

fn unauthorized(action: &str, encoded: &str) -> Reply {
    ec2_error(
        403,
        "UnauthorizedOperation",
        &format!(
            "You are not authorized to perform this operation. User: arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{INSTANCE_ID} is not authorized to perform: ec2:{action} on resource: arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID} because no identity-based policy allows the ec2:{action} action. Encoded authorization failure message: {encoded}"
        ),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Verifies a SigV4 signature as EC2 does: the scope (this region's ec2), the timestamp (within 5 minutes
/// of the simulator's clock), the HMAC over the canonical request with the key's secret, and for a role's
/// key the session token issued with it. The access key on success; EC2's error answer otherwise.
#[allow(clippy::result_large_err)]
fn verify(parts: &hyper::http::request::Parts, body: &[u8], s: &State) -> Result<(String, String), Reply> {
    let auth_failure = || ec2_error(401, "AuthFailure", "AWS was not able to validate the provided access credentials");
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = header("authorization");
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else { return Err(auth_failure()) };
    let field = |name: &str| fields.split(", ").find_map(|p| p.strip_prefix(name)).unwrap_or("");
    let (credential, signed_headers, signature) = (field("Credential="), field("SignedHeaders="), field("Signature="));
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, "ec2", "aws4_request"] = scope.as_slice() else { return Err(auth_failure()) };
    // The account's regions: those enabled for it (DescribeRegions' list).
    if !s.account.regions(&s.scenario).contains(region) {
        return Err(auth_failure());
    }
    let (secret, session) = if let Some((_, secret)) = s.scenario.static_keys.iter().find(|(k, _)| k == key) {
        (secret.clone(), None)
    } else if let Some(issued) = s.issued.iter().find(|i| i.key == *key) {
        (issued.secret.clone(), Some(issued.session.clone()))
    } else {
        return Err(auth_failure());
    };
    if session.as_deref().is_some_and(|t| t != header("x-amz-security-token")) {
        return Err(auth_failure());
    }
    let amz_date = header("x-amz-date");
    let Some(signed_at) = parse_amz_date(amz_date) else { return Err(auth_failure()) };
    let now = SystemTime::now() + s.scenario.clock_ahead;
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(300) || !amz_date.starts_with(date) {
        return Err(ec2_error(400, "RequestExpired", "Request has expired."));
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = match parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
        Some(hash) => hash.to_string(),
        None => hex(&Sha256::digest(body)),
    };
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload}",
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or("")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/ec2/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region.as_bytes(), b"ec2", b"aws4_request"] {
        k = hmac(&k, part);
    }
    if hex(&hmac(&k, to_sign.as_bytes())) != signature {
        return Err(ec2_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if s.scenario.expired_credentials && session.is_some() {
        return Err(ec2_error(400, "RequestExpired", "Request has expired."));
    }
    Ok((key.to_string(), region.to_string()))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn ec2(parts: &hyper::http::request::Parts, body: &[u8], params: &[(String, String)], s: &mut State) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = Instant::now();
    s.account.settle(now);
    if parts.uri.path().starts_with("/latest/") {
        // An IMDS request that went through a proxy: a proxy on EC2 would answer with its own metadata.
        return reply(403, TEXT, "Forbidden: metadata requests must not go through a proxy");
    }
    if let Some(status) = s.scenario.echo_error_page {
        let page = format!(
            "<html><head><title>{status}</title></head><body><h1>Request rejected</h1><pre>{}</pre></body></html>",
            echo(parts, body)
        );
        return reply(status, "text/html", page);
    }
    if s.scenario.echo_ok_not_xml {
        return reply(200, "text/plain", format!("OK\n{}", echo(parts, body)));
    }
    if let Some(size) = s.scenario.huge_answer {
        return reply(500, "text/html", "Z9".repeat(size / 2));
    }
    let (key, region) = match verify(parts, body, s) {
        Ok(signed) => signed,
        Err(answer) => {
            if s.scenario.skew_keeps_moving && answer.status() == 400 {
                s.scenario.clock_ahead += Duration::from_secs(3600);
            }
            return answer;
        }
    };
    if s.scenario.echo_request_id {
        let mut r = ec2_error(400, "InvalidRequest", "The request is invalid.");
        *r.body_mut() = Full::new(Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidRequest</Code><Message>The request is invalid.</Message></Error></Errors><RequestID>{key}</RequestID></Response>"
        )));
        r.headers_mut().insert("x-amzn-requestid", key.parse().unwrap());
        return r;
    }
    // The encoded authorization message: EC2's, or the signing key ten times over (URL-safe base64 in shape,
    // long enough to look like one).
    let encoded = if s.scenario.echo_encoded_message { key.repeat(10) } else { ENCODED.to_string() };
    if s.scenario.echo_in_message {
        return ec2_error(400, "InvalidRequest", &format!("The request is invalid: {}", echo(parts, body)));
    }
    let action = param("Action").unwrap_or("");
    s.signed += 1;
    if s.scenario.throttle_actions.contains(&action) {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if action == "DescribeInstances" && s.modified {
        if let Some(code) = s.scenario.refuse_reads_after_modify {
            return ec2_error(401, code, "The security token included in the request is expired");
        }
    }
    if s.scenario.throttle_requests.contains(&(s.signed - 1)) {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if !s.account.admit(action, &region, now) {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if s.throttled < s.scenario.throttle_first {
        s.throttled += 1;
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if s.errored < s.scenario.server_error_first {
        s.errored += 1;
        return ec2_error(500, "InternalError", "An internal error has occurred");
    }
    let dry_run = param("DryRun") == Some("true");
    match action {
        "DescribeInstances" | "ModifyInstanceMetadataOptions" => {}
        "DescribeRegions" | "GetInstanceMetadataDefaults" | "ModifyInstanceMetadataDefaults" => {
            if s.scenario.unauthorized.contains(&action) {
                return unauthorized(action, &encoded);
            }
            if dry_run {
                return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
            }
            return account_action(action, params, &region, s);
        }
        _ => return ec2_error(400, "InvalidAction", "The action is not valid for this web service."),
    }
    if action == "DescribeInstances" {
        if s.scenario.unauthorized.contains(&action) {
            return unauthorized(action, &encoded);
        }
        if dry_run {
            return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
        }
        let query = Query::from_params(params);
        let first = query.ids.first().cloned().unwrap_or_default();
        if s.scenario.malformed_describe {
            return reply(
                200,
                "text/xml",
                format!(
                    "<DescribeInstancesResponse><reservationSet><item><instancesSet><item><instanceId>{first}</instanceId><metadataOptions><httpPutResponseHopLimit>two</httpPutResponseHopLimit>"
                ),
            );
        }
        if s.scenario.truncated_describe {
            return reply(200, "text/xml", "<DescribeInstancesResponse><reservationSet><item>");
        }
        if let Some(bad) = query.ids.iter().find(|id| !well_formed(id)) {
            return ec2_error(400, "InvalidInstanceID.Malformed", &format!("Invalid id: \"{bad}\""));
        }
        let (ids, mut next) = match select(&s.account, &region, &query) {
            Ok(page) => page,
            Err((code, message)) => return ec2_error(400, &code, &message),
        };
        if s.scenario.page_token_cycle && query.max_results.is_some() {
            next = Some(if query.next_token.as_deref() == Some("A") { "B" } else { "A" }.to_string());
        }
        let echo_enums = s.scenario.echo_in_enums.then(|| echo(parts, body));
        let reservations: String = ids
            .iter()
            .map(|id| {
                let xml = describe_xml(id, &s.account.instances[id], !s.scenario.no_metadata_options);
                match &echo_enums {
                    Some(echo) => forge_enums(&xml, id, echo),
                    None => xml,
                }
            })
            .collect();
        let next = next.map(|t| format!("<nextToken>{t}</nextToken>")).unwrap_or_default();
        return reply(
            200,
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><reservationSet>{reservations}</reservationSet>{next}</DescribeInstancesResponse>"
            ),
        );
    }
    let id = param("InstanceId").unwrap_or("").to_string();
    if !well_formed(&id) {
        return ec2_error(400, "InvalidInstanceID.Malformed", &format!("Invalid id: \"{id}\""));
    }
    if s.account.instances.get(&id).is_none_or(|i| i.region != region) {
        return ec2_error(400, "InvalidInstanceID.NotFound", &format!("The instance ID '{id}' does not exist"));
    }
    let over_cap = s.scenario.policy_max_hop_limit.is_some_and(|cap| {
        param("HttpPutResponseHopLimit").and_then(|v| v.parse::<i64>().ok()).is_some_and(|h| h > cap)
    });
    if s.scenario.unauthorized.contains(&action) || over_cap || s.scenario.unauthorized_instances.contains(&id) {
        return unauthorized(action, &encoded);
    }
    if dry_run {
        return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
    }
    let instance = s.account.instances[&id].clone();
    // ModifyInstanceMetadataOptions, with EC2's validation; fields not given are kept.
    let mut next = instance.options.clone();
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
    if let Some(answer) = set_fields(&mut next, &param, true, false) {
        return answer;
    }
    s.account.change(&id, next, now);
    s.modified = true;
    if s.scenario.terminate_on_modify {
        let instance = s.account.instances.get_mut(&id).unwrap();
        instance.run_state = "terminated";
        instance.applied_at = Some(now + UNTIL_STARTED);
    }
    if s.scenario.lose_first_modify_answer {
        s.scenario.lose_first_modify_answer = false;
        return ec2_error(500, "InternalError", "An internal error has occurred");
    }
    let instance = s.account.instances[&id].clone();
    reply(
        200,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ModifyInstanceMetadataOptionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><instanceId>{id}</instanceId>{}</ModifyInstanceMetadataOptionsResponse>",
            options_xml("instanceMetadataOptions", &instance)
        ),
    )
}

/// DescribeRegions and the account-level metadata defaults of the signed region.
fn account_action(action: &str, params: &[(String, String)], region: &str, s: &mut State) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    const XMLNS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
    let by_policy = s.scenario.defaults_by_policy.contains(&region);
    match action {
        "DescribeRegions" if s.scenario.regions_garbage => {
            reply(200, "text/html", "<html><body>Sign in to the network</body></html>")
        }
        "DescribeRegions" if s.scenario.no_regions => reply(
            200,
            XML,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse {XMLNS}><requestId>sim</requestId><regionInfo/></DescribeRegionsResponse>"
            ),
        ),
        "DescribeRegions" => {
            let items: String = s
                .account
                .regions(&s.scenario)
                .iter()
                .map(|r| {
                    format!("<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>")
                })
                .collect();
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse {XMLNS}><requestId>sim</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
                ),
            )
        }
        "GetInstanceMetadataDefaults" => {
            let d = s.account.defaults.get(region).cloned().unwrap_or(NO_PREFERENCE);
            let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
            let managed = if by_policy {
                "<managedBy>declarative-policy</managedBy><managedExceptionMessage>Managed by the organization's declarative policy for EC2 (instance metadata defaults).</managedExceptionMessage>"
            } else {
                "<managedBy>account</managedBy>"
            };
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetInstanceMetadataDefaultsResponse {XMLNS}><requestId>sim</requestId><accountLevel>{}{}{}{}{managed}</accountLevel></GetInstanceMetadataDefaultsResponse>",
                    field("httpTokens", d.http_tokens.map(str::to_string)),
                    field("httpPutResponseHopLimit", d.hop_limit.map(|h| h.to_string())),
                    field("httpEndpoint", d.http_endpoint.map(str::to_string)),
                    field("instanceMetadataTags", d.tags.map(str::to_string)),
                ),
            )
        }
        _ => {
            if by_policy {
                return ec2_error(
                    400,
                    "UnsupportedOperation",
                    "The instance metadata defaults are managed by a declarative policy and cannot be modified.",
                );
            }
            let mut next = s.account.defaults.get(region).cloned().unwrap_or(NO_PREFERENCE);
            if let Some(v) = param("HttpPutResponseHopLimit") {
                match v.parse::<i64>() {
                    Ok(-1) => next.hop_limit = None,
                    Ok(n) if (1..=64).contains(&n) => next.hop_limit = Some(n),
                    _ => {
                        return ec2_error(
                            400,
                            "InvalidParameterValue",
                            &format!("Value ({v}) for parameter HttpPutResponseHopLimit is invalid."),
                        );
                    }
                }
            }
            if let Some(answer) = set_fields(&mut next, &param, false, true) {
                return answer;
            }
            s.account.defaults.insert(region.to_string(), next);
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ModifyInstanceMetadataDefaultsResponse {XMLNS}><requestId>sim</requestId><return>true</return></ModifyInstanceMetadataDefaultsResponse>"
                ),
            )
        }
    }
}

/// The HttpTokens and toggle fields a modify sends, set with EC2's validation (the others are kept), or EC2's
/// refusal of a bad value. `no_preference` (the defaults API) also takes `no-preference`, which unsets a field.
fn set_fields<'p>(
    next: &mut Options,
    param: &dyn Fn(&str) -> Option<&'p str>,
    ipv6: bool,
    no_preference: bool,
) -> Option<Reply> {
    const TOGGLE: &[&str] = &["enabled", "disabled"];
    let mut fields: Vec<(&str, &mut Option<&'static str>, &[&'static str])> = vec![
        ("HttpTokens", &mut next.http_tokens, &["optional", "required"]),
        ("HttpEndpoint", &mut next.http_endpoint, TOGGLE),
        ("InstanceMetadataTags", &mut next.tags, TOGGLE),
    ];
    if ipv6 {
        fields.push(("HttpProtocolIpv6", &mut next.ipv6, TOGGLE));
    }
    for (name, slot, allowed) in fields {
        match param(name) {
            None => {}
            Some("no-preference") if no_preference => *slot = None,
            Some(v) => match allowed.iter().find(|a| **a == v) {
                Some(a) => *slot = Some(a),
                None => {
                    return Some(ec2_error(
                        400,
                        "InvalidParameterValue",
                        &format!("Value ({v}) for parameter {name} is invalid."),
                    ));
                }
            },
        }
    }
    None
}

/// Account-level defaults nobody has set.
const NO_PREFERENCE: Options =
    Options { http_tokens: None, hop_limit: None, http_endpoint: None, ipv6: None, tags: None };
const XML: &str = "text/xml;charset=UTF-8";

/// `i-` and 8 or 17 hex digits, as EC2 checks an instance id before it looks it up.
fn well_formed(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `xml` (one reservation) with HttpTokens an echo of the request and 200,000 characters more, and the state
/// name a line break and a forged table row: remote text in fields whose values the agent knows.
fn forge_enums(xml: &str, id: &str, echo: &str) -> String {
    let tokens = xml_escape(&format!("{echo}{}", "x".repeat(200_000)));
    let state = format!("running\n{id}  {REGION}  running  2  enabled  changed, applied");
    let xml = match (xml.find("<httpTokens>"), xml.find("</httpTokens>")) {
        (Some(a), Some(b)) => format!("{}<httpTokens>{tokens}{}", &xml[..a], &xml[b..]),
        _ => xml.to_string(),
    };
    let (a, b) = (xml.find("<name>").unwrap(), xml.find("</name>").unwrap());
    format!("{}<name>{}{}", &xml[..a], xml_escape(&state), &xml[b..])
}

/// One reservation holding one instance, as DescribeInstances gives it: id, state, tags, metadata options.
fn describe_xml(id: &str, i: &Instance, with_options: bool) -> String {
    let code = match i.run_state {
        "running" => 16,
        "terminated" => 48,
        _ => 80,
    };
    let tags: String = i
        .tags
        .iter()
        .map(|(k, v)| format!("<item><key>{}</key><value>{}</value></item>", xml_escape(k), xml_escape(v)))
        .collect();
    let tags = if tags.is_empty() { String::new() } else { format!("<tagSet>{tags}</tagSet>") };
    let options = if with_options { options_xml("metadataOptions", i) } else { String::new() };
    format!(
        "<item><reservationId>r-{}</reservationId><ownerId>{ACCOUNT}</ownerId><groupSet/><instancesSet><item><instanceId>{id}</instanceId><instanceState><code>{code}</code><name>{}</name></instanceState>{tags}{options}</item></instancesSet></item>",
        &id[2..],
        i.run_state
    )
}

fn options_xml(tag: &str, i: &Instance) -> String {
    let o = &i.options;
    let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
    format!(
        "<{tag}><state>{}</state>{}{}{}{}{}</{tag}>",
        i.state(),
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

/// Days since 1970-01-01 of a civil date, and back (Howard Hinnant's algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `20261123T034512Z`, as SigV4's X-Amz-Date.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    if s.len() != 16 || &s[8..9] != "T" || !s.ends_with('Z') {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|v| v.parse::<i64>().ok());
    let days = days_from_civil(n(0..4)?, n(4..6)?, n(6..8)?);
    let secs = days * 86400 + n(9..11)? * 3600 + n(11..13)? * 60 + n(13..15)?;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// `2026-11-22T13:00:00Z`, without a date crate.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_spends_its_burst_then_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new((3.0, 2.0), t0);
        assert!((0..3).all(|_| b.take(t0, 1.0)));
        assert!(!b.take(t0, 1.0), "burst spent");
        assert!(!b.take(t0 + Duration::from_millis(400), 1.0), "0.8 of a token");
        assert!(b.take(t0 + Duration::from_millis(500), 1.0), "one token after half a second at 2/s");
        assert!(b.take(t0 + Duration::from_millis(750), 2.0), "scaled: twice the refill");
        let mut b = Bucket::new((3.0, 2.0), t0);
        assert!((0..3).all(|_| b.take(t0 + Duration::from_secs(100), 1.0)), "never more than the burst");
        assert!(!b.take(t0 + Duration::from_secs(100), 1.0));
    }

    #[test]
    fn an_account_throttles_each_action_from_its_own_bucket_and_applies_after_pending() {
        let scenario = Scenario {
            more_instances: 2,
            buckets: Some(Buckets { describe: (2.0, 1.0), modify: (1.0, 1.0), defaults: (2.0, 2.0), time_scale: 1.0 }),
            ..Scenario::default()
        };
        let t0 = Instant::now();
        let mut a = Account::new(&scenario);
        assert_eq!(a.instances.len(), 3);
        assert!(a.admit("DescribeInstances", REGION, t0) && a.admit("DescribeInstances", REGION, t0));
        assert!(!a.admit("DescribeInstances", REGION, t0));
        assert!(a.admit("ModifyInstanceMetadataOptions", REGION, t0), "its own bucket");
        assert!(!a.admit("ModifyInstanceMetadataOptions", REGION, t0));
        assert!(a.admit("DescribeInstances", "eu-west-1", t0), "each region has its own budget");
        let id = more_instance_id(1);
        a.change(&id, Options { hop_limit: Some(2), ..Options::default() }, t0);
        assert_eq!(a.instances[&id].state(), "pending");
        a.settle(t0 + scenario.pending_for);
        assert_eq!(a.instances[&id].state(), "applied");
        assert_eq!(a.instances[&id].effective_hop_limit, 2);
    }

    fn fleet() -> Account {
        let spec = |n: usize, region: &'static str, team: &str, state: &'static str| InstanceSpec {
            id: format!("i-2{n:016x}"),
            region,
            tags: vec![("team".into(), team.into())],
            state,
            options: Options { hop_limit: Some(if n % 2 == 0 { 1 } else { 2 }), ..Options::default() },
        };
        let mut instances: Vec<InstanceSpec> = (0..12).map(|n| spec(n, REGION, "web", "running")).collect();
        instances.push(spec(12, REGION, "web", "stopped"));
        instances.push(spec(13, REGION, "batch", "running"));
        instances.push(spec(14, "eu-west-1", "web", "running"));
        Account::new(&Scenario { instances, ..Scenario::default() })
    }

    fn query(filters: &[(&str, &[&str])], max: Option<usize>, token: Option<&str>) -> Query {
        Query {
            ids: Vec::new(),
            filters: filters.iter().map(|(n, v)| (n.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            max_results: max,
            next_token: token.map(str::to_string),
        }
    }

    #[test]
    fn describe_filters_by_tag_state_and_options_in_the_signed_region_only() {
        let a = fleet();
        let web = select(&a, REGION, &query(&[("tag:team", &["web"])], None, None)).unwrap().0;
        assert_eq!(web.len(), 13, "12 running and 1 stopped web instances in this region, not eu-west-1's");
        let running_web =
            select(&a, REGION, &query(&[("tag:team", &["web"]), ("instance-state-name", &["running"])], None, None));
        assert_eq!(running_web.unwrap().0.len(), 12, "filters are ANDed");
        let at_1 = select(&a, REGION, &query(&[("metadata-options.http-put-response-hop-limit", &["1"])], None, None));
        assert_eq!(at_1.unwrap().0.len(), 8, "even-numbered instances (7 of 0..14 in this region, and the own one)");
        assert_eq!(select(&a, "eu-west-1", &query(&[], None, None)).unwrap().0.len(), 1);
        assert!(select(&a, REGION, &query(&[("colour", &["blue"])], None, None)).is_err(), "unknown filter");
    }

    #[test]
    fn describe_pages_with_max_results_and_next_token() {
        let a = fleet();
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let (page, next) = select(&a, REGION, &query(&[], Some(5), token.as_deref())).unwrap();
            assert!(page.len() <= 5);
            seen.extend(page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(seen.len(), 15, "14 instances of this region and the own one, each once");
        let mut sorted = seen.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), 15);
        assert!(select(&a, REGION, &query(&[], Some(4), None)).is_err(), "MaxResults is 5 to 1000");
    }

    #[test]
    fn describe_by_ids_needs_every_id_and_no_max_results() {
        let a = fleet();
        let ids = vec![INSTANCE_ID.to_string(), "i-20000000000000003".to_string()];
        let q = Query { ids: ids.clone(), ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap().0.len(), 2);
        let q = Query { ids: vec!["i-2000000000000000e".into()], ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap_err().0, "InvalidInstanceID.NotFound", "eu-west-1's, not here");
        let q = Query { ids, max_results: Some(5), ..Query::default() };
        assert_eq!(select(&a, REGION, &q).unwrap_err().0, "InvalidParameterCombination");
    }

    #[test]
    fn amz_dates_round_trip_through_the_calendar() {
        let t = parse_amz_date("20261123T034512Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T03:45:12Z");
        assert_eq!(parse_amz_date("2026-11-23"), None);
    }
}
