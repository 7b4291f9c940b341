//! Fakes of the two sides for unit tests: an EC2 whose answers come from a script, and a metadata service
//! whose answers are fields. Shared by the reconcile loop's tests and doctor's.

use crate::cli::Output;
use crate::config::{Config, Mode};
use crate::ec2::{Ec2, Modified};
use crate::error::{Error, Result};
use crate::imds::{Metadata, Probe};
use crate::plan::{Change, HopLimit, HttpTokens, MetadataOptions, State, Toggle, Wanted};
use std::cell::RefCell;
use std::time::{Duration, SystemTime};

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

pub fn config(mode: Mode) -> Config {
    Config {
        mode,
        wanted: Wanted {
            hop_limit: HopLimit::new(2).unwrap(),
            exact: false,
            http_tokens: None,
            ipv6_endpoint: None,
            instance_tags: None,
        },
        instance_id: None,
        region: None,
        wait: true,
        wait_timeout: Duration::from_secs(5),
        imds_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        imds_endpoint: "http://127.0.0.1:1".into(),
        output: Output::Text,
        evidence: crate::cli::EvidenceSource::Ec2,
        watch: None,
    }
}

/// An EC2 whose describe answers come from a script (the last one repeats), recording the modifies it is
/// sent; `refuse_modify` answers every modify with that error instead.
pub struct Scripted {
    pub describes: RefCell<Vec<MetadataOptions>>,
    pub modifies: RefCell<Vec<(Change, bool)>>,
    pub refuse_modify: Option<fn() -> Error>,
}

impl Scripted {
    pub fn new(answers: Vec<MetadataOptions>) -> Self {
        Scripted { describes: RefCell::new(answers), modifies: RefCell::default(), refuse_modify: None }
    }
}

impl Ec2 for Scripted {
    async fn describe_instance(&self, _: &str) -> Result<(crate::plan::InstanceState, MetadataOptions)> {
        let mut d = self.describes.borrow_mut();
        Ok((crate::plan::InstanceState::Running, if d.len() > 1 { d.remove(0) } else { d[0].clone() }))
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
    pub instance_id: fn() -> Result<String>,
    pub has_role: bool,
    pub expiration: Option<SystemTime>,
}

impl Default for FakeImds {
    fn default() -> Self {
        FakeImds {
            connects: true,
            instance_id: || Ok("i-12345678".into()),
            has_role: true,
            expiration: Some(SystemTime::now() + Duration::from_secs(3600)),
        }
    }
}

impl Metadata for FakeImds {
    async fn instance_id(&self) -> Result<String> {
        (self.instance_id)()
    }
    async fn region(&self) -> Result<String> {
        Ok("us-west-2".into())
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
