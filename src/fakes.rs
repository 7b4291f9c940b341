//! Fakes of every side for unit tests, compiled for tests only: an EC2 whose answers come from a script (the
//! reconcile loop's and doctor's tests), an account of instances and defaults kept in memory behind the
//! `Ec2`, `Fleet` and `Defaults` ports (the fleet's and defaults' tests, on tokio's paused clock), and a
//! metadata service whose answers are fields.

use crate::cli::Output;
use crate::config::Config;
use crate::ec2::failures::{Failure, FailureKind, Service};
use crate::ec2::{AccountDefaults, Defaults, Described, Ec2, Filter, Fleet, ManagedBy, Modified, Page};
use crate::error::{Error, Result};
use crate::imds::{Metadata, Probe};
use crate::plan::{Change, HopLimit, HttpTokens, InstanceState, Intent, MetadataOptions, State, Toggle, Wanted};
use std::cell::RefCell;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// EC2's token buckets and filters: the one model the simulator shares.
#[path = "../tests/ec2_model.rs"]
mod model;

pub fn options(hop: i64, state: State) -> MetadataOptions {
    MetadataOptions {
        state: Some(state),
        http_tokens: Some(HttpTokens::Required),
        hop_limit: HopLimit::new(hop),
        http_endpoint: Some(Toggle::Enabled),
        ipv6_endpoint: Some(Toggle::Disabled),
        instance_tags: Some(Toggle::Disabled),
    }
}

pub fn config(intent: Intent) -> Config {
    Config {
        intent,
        wanted: Wanted {
            hop_limit: HopLimit::new(2).unwrap(),
            exact: false,
            http_tokens: None,
            ipv6_endpoint: None,
            instance_tags: None,
        },
        instance_id: None,
        region: None,
        wait_timeout: Duration::from_secs(5),
        imds_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        imds_endpoint: "http://127.0.0.1:1".into(),
        output: Output::Text,
        evidence: crate::cli::EvidenceSource::Ec2,
    }
}

/// An EC2 whose describe answers come from a script (the last one repeats), recording the modifies it is
/// sent; `refuse_modify` answers every modify with that error instead.
pub struct Scripted {
    pub describes: RefCell<Vec<MetadataOptions>>,
    pub modifies: RefCell<Vec<(Change, bool)>>,
    pub refuse_modify: Option<fn() -> Error>,
    /// Where the instance came from, as its tags say.
    pub source: crate::source::Source,
}

impl Scripted {
    pub fn new(answers: Vec<MetadataOptions>) -> Self {
        Scripted {
            describes: RefCell::new(answers),
            modifies: RefCell::default(),
            refuse_modify: None,
            source: Default::default(),
        }
    }
}

impl Ec2 for Scripted {
    async fn describe_instance(&self, id: &str) -> Result<Described> {
        let mut d = self.describes.borrow_mut();
        let options = if d.len() > 1 { d.remove(0) } else { d[0].clone() };
        Ok(Described {
            instance_id: id.into(),
            state: crate::plan::InstanceState::Running,
            options,
            source: self.source.clone(),
        })
    }
    async fn modify(&self, _: &str, change: &Change, dry_run: bool) -> Result<Modified> {
        self.modifies.borrow_mut().push((*change, dry_run));
        if let Some(refuse) = self.refuse_modify {
            return Err(refuse());
        }
        Ok(if dry_run { Modified::WouldSucceed } else { Modified::Accepted(options(2, State::Pending)) })
    }
}

/// A metadata service described by its answers.
pub struct FakeImds {
    pub connects: bool,
    /// The instance id read (and with it the token), or the error it fails with.
    pub instance_id: fn() -> Result<crate::ids::InstanceId>,
    pub has_role: bool,
    pub expiration: Option<SystemTime>,
}

impl Default for FakeImds {
    fn default() -> Self {
        FakeImds {
            connects: true,
            instance_id: || Ok("i-12345678".parse().expect("an instance id")),
            has_role: true,
            expiration: Some(SystemTime::now() + Duration::from_secs(3600)),
        }
    }
}

impl Metadata for FakeImds {
    async fn instance_id(&self) -> Result<crate::ids::InstanceId> {
        (self.instance_id)()
    }
    async fn region(&self) -> Result<crate::ids::Region> {
        Ok("us-west-2".parse().expect("a region"))
    }
    async fn has_role(&self) -> Result<bool> {
        Ok(self.has_role)
    }
}

impl Probe for FakeImds {
    fn endpoint(&self) -> &str {
        "http://169.254.169.254"
    }
    async fn accepts_connections(&self) -> bool {
        self.connects
    }
    async fn availability_zone(&self) -> Result<String> {
        Ok("us-west-2a".into())
    }
    async fn role_credentials_expiration(&self) -> Result<Option<SystemTime>> {
        Ok(self.expiration)
    }
    async fn role_credentials(&self) -> Result<()> {
        Ok(())
    }
}

/// One instance of a `FakeAccount`.
#[derive(Debug, Clone)]
pub struct FakeInstance {
    pub id: crate::ids::InstanceId,
    pub state: InstanceState,
    pub options: MetadataOptions,
    /// When a change sent to it is applied (its state `pending` until then).
    pub applies_at: Option<Instant>,
    pub tags: Vec<(String, String)>,
}

/// A call the fake account answered: the action, and whether it was throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub action: &'static str,
    pub throttled: bool,
}

/// An EC2 account in one region, in memory, on tokio's clock (paused in the tests, so schedules are exact):
/// instances read in pages of `page_size`; ModifyInstanceMetadataOptions behind EC2's token bucket
/// (`burst`, refilled at `rate` a second; a call over it is throttled); a change applied `apply_after` after
/// it is taken; `pages`, when set, the page tokens to answer with instead (to script a cycle); the region's
/// metadata defaults. Every call is logged.
pub struct FakeAccount {
    pub instances: RefCell<Vec<FakeInstance>>,
    pub page_size: usize,
    pub pages: Option<Vec<Option<&'static str>>>,
    bucket: RefCell<model::Bucket<Instant>>,
    pub apply_after: Duration,
    pub defaults: RefCell<AccountDefaults>,
    /// What `modify_defaults` leaves the defaults as, when not what was sent (a policy that overrides it).
    pub defaults_read_back: Option<MetadataOptions>,
    pub calls: RefCell<Vec<Call>>,
}

impl FakeAccount {
    /// `n` running instances at hop limit `hop`, applied; a bucket of 100 at 5 a second, as EC2 documents it.
    pub fn with(n: usize, hop: i64) -> Self {
        let instances = (0..n)
            .map(|i| FakeInstance {
                id: format!("i-{i:017x}").as_str().into(),
                state: InstanceState::Running,
                options: options(hop, State::Applied),
                applies_at: None,
                tags: Vec::new(),
            })
            .collect();
        FakeAccount {
            instances: RefCell::new(instances),
            page_size: 1000,
            pages: None,
            bucket: RefCell::new(model::Bucket::new((100.0, 5.0), Instant::now())),
            apply_after: Duration::from_secs(2),
            defaults: RefCell::default(),
            defaults_read_back: None,
            calls: RefCell::default(),
        }
    }

    /// EC2's bucket for modifies: `burst` at once, `rate` a second, full now.
    pub fn bucket(self, burst: f64, rate: f64) -> Self {
        *self.bucket.borrow_mut() = model::Bucket::new((burst, rate), Instant::now());
        self
    }

    pub fn count(&self, action: &str, throttled: bool) -> usize {
        self.calls.borrow().iter().filter(|c| c.action == action && c.throttled == throttled).count()
    }

    pub fn instance(&self, id: &str) -> FakeInstance {
        self.instances.borrow().iter().find(|i| i.id == *id).cloned().expect("an instance of the fake account")
    }

    fn log(&self, action: &'static str, throttled: bool) {
        self.calls.borrow_mut().push(Call { action, throttled });
    }

    /// Applies every change whose time has come, and returns the instance as read now.
    fn read(&self, i: &mut FakeInstance) -> Described {
        if i.applies_at.is_some_and(|at| at <= Instant::now()) {
            i.applies_at = None;
            i.options.state = Some(State::Applied);
        }
        Described { instance_id: i.id.clone(), state: i.state, options: i.options.clone(), source: Default::default() }
    }

    /// Takes a token from the modify bucket, or answers as EC2 does when it is empty.
    fn take_token(&self) -> Result<()> {
        match self.bucket.borrow_mut().take(Instant::now(), 1.0) {
            true => Ok(()),
            false => Err(throttled("ModifyInstanceMetadataOptions")),
        }
    }
}

pub fn throttled(operation: &'static str) -> Error {
    Error::Call {
        operation,
        failure: Failure {
            status: Some(503),
            code: Some("RequestLimitExceeded".into()),
            ..Failure::new(Service::Ec2, FailureKind::Throttled)
        },
    }
}

/// Whether an instance passes every filter, as EC2 (and the simulator) match them.
fn matches(i: &FakeInstance, filters: &[Filter]) -> bool {
    let seen = model::Seen {
        id: i.id.as_str(),
        state: i.state.as_str(),
        tags: &i.tags,
        hop_limit: i.options.hop_limit.map(|h| i64::from(h.get())),
        http_endpoint: i.options.http_endpoint.map(Toggle::as_str),
        http_tokens: i.options.http_tokens.map(HttpTokens::as_str),
    };
    filters.iter().all(|f| model::matches(&seen, &f.name, &f.values).unwrap_or_else(|e| panic!("{e}")))
}

impl Ec2 for FakeAccount {
    async fn describe_instance(&self, instance_id: &str) -> Result<Described> {
        self.log("DescribeInstances", false);
        let mut all = self.instances.borrow_mut();
        let i = all.iter_mut().find(|i| i.id == *instance_id).expect("an instance of the fake account");
        Ok(self.read(i))
    }

    async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool) -> Result<Modified> {
        if let Err(err) = self.take_token() {
            self.log("ModifyInstanceMetadataOptions", true);
            return Err(err);
        }
        self.log("ModifyInstanceMetadataOptions", false);
        if dry_run {
            return Ok(Modified::WouldSucceed);
        }
        let mut all = self.instances.borrow_mut();
        let i = all.iter_mut().find(|i| i.id == *instance_id).expect("an instance of the fake account");
        i.options = MetadataOptions { state: Some(State::Pending), ..change.applied_to(&i.options) };
        i.applies_at = Some(Instant::now() + self.apply_after);
        Ok(Modified::Accepted(i.options.clone()))
    }
}

impl Fleet for FakeAccount {
    async fn select(&self, filters: &[Filter], next: Option<&str>) -> Result<Page> {
        self.log("DescribeInstances", false);
        let calls = self.count("DescribeInstances", false);
        if let Some(pages) = &self.pages {
            // A scripted listing: one instance a page, the tokens as given.
            let mut all = self.instances.borrow_mut();
            let instances = all.iter_mut().take(1).map(|i| self.read(i)).collect();
            return Ok(Page { instances, next: pages.get(calls - 1).copied().flatten().map(String::from) });
        }
        let start: usize = next.map_or(0, |t| t.parse().expect("a token of ours"));
        let mut all = self.instances.borrow_mut();
        let selected: Vec<&mut FakeInstance> = all.iter_mut().filter(|i| matches(i, filters)).collect();
        let end = (start + self.page_size).min(selected.len());
        let more = end < selected.len();
        let instances = selected.into_iter().skip(start).take(end - start).map(|i| self.read(i)).collect();
        Ok(Page { instances, next: more.then(|| end.to_string()) })
    }
}

impl Defaults for FakeAccount {
    async fn regions(&self) -> Result<Vec<crate::ids::Region>> {
        self.log("DescribeRegions", false);
        Ok(vec!["us-west-2".parse().expect("a region")])
    }

    async fn defaults(&self) -> Result<AccountDefaults> {
        self.log("GetInstanceMetadataDefaults", false);
        Ok(self.defaults.borrow().clone())
    }

    async fn modify_defaults(&self, change: &Change) -> Result<()> {
        self.log("ModifyInstanceMetadataDefaults", false);
        let mut defaults = self.defaults.borrow_mut();
        if defaults.managed_by == Some(ManagedBy::DeclarativePolicy) {
            panic!("a change sent to defaults that a declarative policy manages");
        }
        defaults.options = match &self.defaults_read_back {
            Some(options) => options.clone(),
            None => change.applied_to(&defaults.options),
        };
        Ok(())
    }
}
