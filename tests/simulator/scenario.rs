//! What a test asks of the simulated account (`Scenario`): the account and its instances, what its policies
//! refuse, its budget, how IMDS is served, and each side's faults as a list of its own enum.

use super::{INSTANCE_ID, REGION, STATIC_KEY, STATIC_SECRET};
use std::net::SocketAddr;
use std::time::Duration;

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

/// What the simulated account is, how it is served, and how it misbehaves: the account and its instances first,
/// then what its policies refuse, then its budget, then how IMDS is served, then the faults of each side, each
/// side's a list of its own enum (an empty list: a well-behaved service).
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The agent's own instance: IMDS answers for it.
    pub options: Options,
    /// The instance EC2 knows; another id is NotFound.
    pub instance_id: String,
    /// How many more instances the account holds, each with `options`: `i-1000000000000000N`.
    pub more_instances: usize,
    /// More instances, each as given (regions, tags, states).
    pub instances: Vec<InstanceSpec>,
    /// The regions DescribeRegions lists as enabled for the account (the instances' regions are added).
    pub regions: Vec<&'static str>,
    /// Regions whose account-level metadata defaults an AWS Organizations declarative policy manages.
    pub defaults_by_policy: Vec<&'static str>,
    /// When a change EC2 took is `applied`.
    pub applies: Applies,
    /// An IAM role is attached to the instance (IMDS serves its credentials).
    pub role_attached: bool,
    /// (access key, secret key) pairs the EC2 side accepts besides the role's.
    pub static_keys: Vec<(String, String)>,
    /// What the account's policies refuse.
    pub policy: Policy,
    /// EC2's request budget (each account's own, per region); None: unlimited.
    pub buckets: Option<Buckets>,
    /// The AWS Organization this account manages: its member accounts (each holding the same instances as
    /// this one, with budgets of their own), entered through sts:AssumeRole; `None`: in no organization
    /// (ListAccounts answers AWSOrganizationsNotInUseException).
    pub organization: Option<Vec<MemberSpec>>,
    /// Set IP_TTL / IPV6_UNICAST_HOPS of each IMDS connection to the applied hop limit, as IMDS does.
    pub ttl_is_hop_limit: bool,
    /// More addresses the IMDS side listens on (fd00:ec2::254 beside 169.254.169.254).
    pub extra_imds: Vec<SocketAddr>,
    /// Every instance of the account gets an IMDS of its own on loopback (`Simulator::imds_urls`), answering
    /// for it (and, with `ttl_is_hop_limit`, with its hop limit as TTL): a storm of agents that each sense
    /// their own instance, as on EC2.
    pub imds_per_instance: bool,
    /// Serve EC2 over HTTPS with this certificate chain and key (PEM files), as EC2 is served.
    pub ec2_tls: Option<(String, String)>,
    /// The account's launch templates (each member account holds the same ones).
    pub templates: Vec<TemplateSpec>,
    /// The account's Auto Scaling groups: (name, the launch template id it launches from, the version it asks
    /// for: `$Default`, `$Latest` or a number), in the scenario's region.
    pub groups: Vec<(&'static str, &'static str, &'static str)>,
    /// How EC2 misbehaves.
    pub ec2_faults: Vec<Ec2Fault>,
    /// How IMDS misbehaves.
    pub imds_faults: Vec<ImdsFault>,
}

/// When a change EC2 took is `applied`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests choose `Never`; the demo's binary does not"))]
pub enum Applies {
    /// `pending` this long first (scaled by the buckets' time scale).
    After(Duration),
    /// Never: the change stays `pending`.
    Never,
}

/// What the account's policies refuse.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// EC2 actions answered with UnauthorizedOperation (with an encoded authorization message).
    pub unauthorized: Vec<&'static str>,
    /// How the UnauthorizedOperation message names the policy that refused ("with an explicit deny in a
    /// service control policy", "because no session policy allows the ec2:X action", ...); by default no
    /// identity-based policy allows the action.
    pub refused_by: Option<&'static str>,
    /// Instances whose ModifyInstanceMetadataOptions answers UnauthorizedOperation (a tag-conditioned policy).
    pub unauthorized_instances: Vec<String>,
    /// A cap on the hop limit a Modify may set (as the shipped policy's condition or an SCP).
    pub max_hop_limit: Option<i64>,
    /// Member accounts whose role refuses sts:AssumeRole (AccessDenied).
    pub refuse_roles: Vec<String>,
    /// Launch templates whose CreateLaunchTemplateVersion answers UnauthorizedOperation (a policy conditioned on
    /// the template's tags).
    pub refuse_templates: Vec<&'static str>,
}

/// A launch template of the account (each member account holds the same ones): its versions, 1 first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub region: &'static str,
    pub tags: Vec<(&'static str, &'static str)>,
    pub versions: Vec<TemplateData>,
    pub default: i64,
}

/// A launch template version's data, as far as the simulator keeps it: the image, the user data, the block
/// device mappings (device, snapshot) and the metadata options (each `None`: not set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateData {
    pub image_id: String,
    pub user_data: Option<String>,
    pub mappings: Vec<(String, Option<String>)>,
    pub options: Options,
}

#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests make templates; the demo's binary does not"))]
impl TemplateData {
    /// An image, user data and a root volume from a snapshot, with these options.
    pub fn with(options: Options) -> Self {
        TemplateData {
            image_id: "ami-0123456789abcdef0".into(),
            user_data: Some("IyEvYmluL3NoCmVjaG8gaGVsbG8=".into()),
            mappings: vec![("/dev/xvda".into(), Some("snap-0123456789abcdef0".into()))],
            options,
        }
    }
}

#[cfg_attr(test, allow(dead_code, reason = "the benchmark's simulator binary makes them; the tests do not"))]
/// The n-th of a benchmark's launch templates: every other one at hop limit 1, the others at 2; HttpTokens
/// required, an image, user data and a root volume from a snapshot.
pub fn bench_template(n: usize) -> TemplateSpec {
    let id: &'static str = Box::leak(format!("lt-{n:017x}").into_boxed_str());
    let name: &'static str = Box::leak(format!("bench-{n}").into_boxed_str());
    let hop = if n % 2 == 0 { 1 } else { 2 };
    TemplateSpec {
        id,
        name,
        region: REGION,
        tags: Vec::new(),
        versions: vec![TemplateData::with(template_options(Some(hop), Some("required")))],
        default: 1,
    }
}

/// Metadata options with only the hop limit (and HttpTokens) set.
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests make templates; the demo's binary does not"))]
pub fn template_options(hop: Option<i64>, tokens: Option<&'static str>) -> Options {
    Options { http_tokens: tokens, hop_limit: hop, ..Options::unset() }
}

impl Options {
    /// Nothing set: a launch template's options that leave every field to the account default or EC2's.
    pub fn unset() -> Self {
        Options { http_tokens: None, hop_limit: None, http_endpoint: None, ipv6: None, tags: None }
    }
}

/// A member account of the organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub id: String,
    pub name: String,
    /// ACTIVE, or SUSPENDED (not listed as active).
    pub active: bool,
}

/// `n` active member accounts: `20000000000N` named `team-N` (N from 1).
pub fn members(n: usize) -> Vec<MemberSpec> {
    (1..=n).map(|i| MemberSpec { id: format!("2{i:011}"), name: format!("team-{i}"), active: true }).collect()
}

/// How EC2 misbehaves, when a scenario says it does. The faults that replace every answer (the echoes, the
/// huge answer) are meant one at a time; the others combine.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// organizations:ListAccounts answers the page tokens A, B, A, B, ...: a cycle.
    AccountsPageCycle,
    /// The first N requests the budget admits answer RequestLimitExceeded.
    ThrottleFirst(usize),
    /// These signed requests (0-based, counting those that passed the signature check) answer
    /// RequestLimitExceeded: throttling at a chosen call site.
    ThrottleRequests(Vec<usize>),
    /// These actions are always answered RequestLimitExceeded (STS's and Organizations' with their own
    /// throttling codes: Throttling, TooManyRequestsException).
    ThrottleActions(Vec<&'static str>),
    /// Requests for these actions (EC2's, STS's or Organizations') are never answered.
    HangActions(Vec<&'static str>),
    /// sts:AssumeRole into this member account answers RegionDisabledException (STS not activated in the
    /// region called, for that account).
    StsRegionDisabled(&'static str),
    /// STS answers 200 with a body that is not XML.
    StsNotXml,
    /// The first N requests the budget admits answer 500 InternalError.
    ServerErrorFirst(usize),
    /// The first modify is carried out, but answered with a 500, as when the answer is lost on the way.
    LoseFirstModifyAnswer,
    /// Every answer comes this late.
    Slow(Duration),
    /// Requests signed for these regions are never answered.
    HangRegions(Vec<&'static str>),
    /// EC2's clock runs this far ahead of the agent's: its signatures look expired.
    ClockAhead(Duration),
    /// Each RequestExpired answer moves EC2's clock another hour ahead: a skew that does not go away however
    /// the agent corrects for it.
    SkewKeepsMoving,
    /// The first N answers to ModifyInstanceMetadataOptions (carried out) are cut off mid-body: the
    /// connection closes before the length the headers promised.
    CutModifyAnswers(usize),
    /// As `CutModifyAnswers`, for DescribeInstances.
    CutDescribeAnswers(usize),
    /// An instance whose change EC2 took is terminated (its change never applies).
    TerminateOnModify,
    /// After the first change EC2 took, every DescribeInstances is refused with this code (AuthFailure,
    /// ExpiredToken): the accepted change cannot be read back.
    RefuseReadsAfterModify(&'static str),
}

/// How IMDS misbehaves, when a scenario says it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code, reason = "the black-box tests choose faults; the demo's binary does not"))]
pub enum ImdsFault {
    /// The token request is never answered (the answer dies on the way, as with a hop limit too low).
    TokenNeverAnswers,
    /// The token answer comes after this long.
    TokenDelay(Duration),
    /// Connections are refused for this long after the start (IMDS not up yet at boot).
    RefuseFor(Duration),
    /// The first N reads (after the token) answer 429.
    ThrottleFirst(usize),
    /// The first N reads answer a 500 page that echoes the request, token header included.
    Echo500First(usize),
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
    /// The sensing probes' token answers (60 s tokens) are chunked: one valid chunk, then a chunk size of
    /// 2^64 - 1 and more bytes (issue 34: the reader summed it with the body's length, which wrapped). Every
    /// other answer is as IMDS gives it.
    HostileChunkSize,
}

impl Scenario {
    /// Whether EC2 shows `fault`.
    pub(super) fn ec2_is(&self, fault: &Ec2Fault) -> bool {
        self.ec2_faults.contains(fault)
    }

    /// What the first EC2 fault `pick` chooses carries.
    pub(super) fn ec2<T>(&self, pick: impl FnMut(&Ec2Fault) -> Option<T>) -> Option<T> {
        self.ec2_faults.iter().find_map(pick)
    }

    /// Whether IMDS shows `fault`.
    pub(super) fn imds_is(&self, fault: ImdsFault) -> bool {
        self.imds_faults.contains(&fault)
    }

    /// What the first IMDS fault `pick` chooses carries.
    pub(super) fn imds<T>(&self, pick: impl FnMut(&ImdsFault) -> Option<T>) -> Option<T> {
        self.imds_faults.iter().find_map(pick)
    }
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            options: Options::default(),
            instance_id: INSTANCE_ID.into(),
            more_instances: 0,
            instances: Vec::new(),
            regions: vec![REGION, "us-east-1", "eu-west-1"],
            defaults_by_policy: Vec::new(),
            applies: Applies::After(Duration::from_millis(300)),
            role_attached: true,
            static_keys: vec![(STATIC_KEY.into(), STATIC_SECRET.into())],
            policy: Policy::default(),
            buckets: None,
            organization: None,
            ttl_is_hop_limit: false,
            extra_imds: Vec::new(),
            imds_per_instance: false,
            ec2_tls: None,
            templates: Vec::new(),
            groups: Vec::new(),
            ec2_faults: Vec::new(),
            imds_faults: Vec::new(),
        }
    }
}
