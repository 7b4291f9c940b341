//! The EC2 side, over aws-sdk-ec2: the only module that sees SDK types and SDK errors. Here the ports the rest
//! of the program calls (`Ec2`, `Fleet`, `Defaults`) with their types, and their adapter over the SDK
//! (`Ec2Api`, `Account`); beside it the clock that requests are signed with (clock.rs), the classifier of SDK
//! failures into this program's errors (failure.rs), the conversions of SDK values (convert.rs), and the
//! accounts side of the org-wide commands over STS and Organizations (org.rs).

mod classify;
mod clock;
mod convert;
pub mod failures;
pub mod groups;
mod org;
pub mod templates;

pub use classify::credentials_failure;
use clock::Clock;
use convert::{instance_state, options_from, toggle, tokens, unknown};
pub use org::Caller;

use crate::ec2::failures::{Failure, FailureKind, Service};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, Region};
use crate::plan::{Change, HopLimit, InstanceState, MetadataOptions};
use crate::remote;
use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataProtocolState, InstanceMetadataTagsState,
};
use std::time::Duration;

/// What the rest of the program needs from EC2 for one instance.
pub trait Ec2 {
    /// The instance's life-cycle state with its options (a stopped instance applies a change when it starts,
    /// a terminated one never will), and where it came from, by its tags.
    async fn describe_instance(&self, instance_id: &str) -> Result<Described>;
    /// Sends `change`; with `dry_run`, only asks whether it would be authorized.
    async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool) -> Result<Modified>;
}

/// What the fleet command needs besides: instances read in pages and in batches.
pub trait Fleet: Ec2 {
    /// One page (up to `PAGE` instances) of the instances that pass every filter (EC2 ANDs them; the values
    /// of one filter are ORed), from `next` on.
    async fn select(&self, filters: &[Filter], next: Option<&str>) -> Result<Page>;
}

/// What the defaults command needs: the account's regions and its metadata defaults in one region.
pub trait Defaults {
    async fn regions(&self) -> Result<Vec<Region>>;
    async fn defaults(&self) -> Result<AccountDefaults>;
    async fn modify_defaults(&self, change: &Change) -> Result<()>;
}

/// The largest page DescribeInstances gives (MaxResults).
pub const PAGE: i32 = 1000;

/// A DescribeInstances filter: a name and the values any of which it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Filter { name: name.into(), values: values.into_iter().map(Into::into).collect() }
    }
}

/// An instance as a fleet read gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    pub instance_id: InstanceId,
    pub state: InstanceState,
    pub options: MetadataOptions,
    /// Where it came from, by its tags (DescribeInstances gives them with no extra call).
    pub source: crate::source::Source,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub instances: Vec<Described>,
    pub next: Option<String>,
}

/// The account-level metadata defaults of one region: `None` is "no preference".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDefaults {
    pub options: MetadataOptions,
    /// Who manages them; `None` when EC2 does not say.
    pub managed_by: Option<ManagedBy>,
    /// Why they are managed elsewhere, as EC2 says it (sanitized).
    pub managed_message: Option<String>,
}

/// Who manages a region's metadata defaults, as EC2 names it (`account`, `declarative-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagedBy {
    /// The account itself: `defaults apply` may change them.
    Account,
    /// An AWS Organizations declarative policy: only the organization may.
    DeclarativePolicy,
    /// A value this build does not know (never shown as EC2 sent it).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Modified {
    /// EC2 took the change; the options as its answer gives them (usually `pending`).
    Accepted(MetadataOptions),
    /// DryRun: the call would have been authorized.
    WouldSucceed,
}

pub struct Ec2Api {
    client: aws_sdk_ec2::Client,
    /// For `templates`: the Auto Scaling groups of the region (made with the same settings, used by nothing else).
    autoscaling: aws_sdk_autoscaling::Client,
    region: String,
    /// The proxy the EC2 calls go through, if any, to name it when it fails.
    proxy: Option<String>,
    /// Which policy a refusal points at: the instance's or the fleet commands'.
    hint: &'static str,
}

/// The SDK settings every AWS client of a run shares: one attempt per call (`Patient`, reconcile.rs, retries
/// with jittered backoff until the deadline), a short connect timeout and a bound on each attempt, and one HTTP
/// client (`http_client`).
fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .time_source(Clock)
}

/// One HTTP client for every AWS client built from one loaded configuration (EC2 and Auto Scaling in each region,
/// STS and Organizations; every account an org-wide run enters shares its caller's): one pool of connections,
/// reused from account to account (each request is signed on its own), and the trust store loaded once. Built as
/// the SDK builds its default (rustls over aws-lc; HTTP_PROXY, HTTPS_PROXY and NO_PROXY from the environment),
/// which it would otherwise build for each client it makes: an org-wide run kept a pool per account and region
/// alive, up to 16 connections each (BENCHMARKS.md, "Organizations").
fn http_client() -> aws_sdk_ec2::config::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
            .proxy_config(ProxyConfig::from_env());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.build()
    })
}

/// The account's settings for the fleet and defaults commands: credentials and the default region from the
/// default chain (environment, `AWS_PROFILE`, SSO, web identity, container, instance role).
#[derive(Clone)]
pub struct Account {
    sdk: aws_config::SdkConfig,
}

impl Account {
    pub async fn load() -> Self {
        Account { sdk: loader().load().await }
    }

    /// The region the default chain gives (`AWS_REGION`, the profile's), if any.
    pub fn default_region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.to_string())
    }

    /// A client for `region` that shares the account's credentials cache.
    pub fn ec2(&self, region: &str) -> Ec2Api {
        let config =
            aws_sdk_ec2::config::Builder::from(&self.sdk).region(aws_config::Region::new(region.to_string())).build();
        let endpoint = crate::config::ec2_endpoint(region);
        let autoscaling = aws_sdk_autoscaling::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_string()))
            .build();
        Ec2Api {
            client: aws_sdk_ec2::Client::from_conf(config),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling),
            region: region.to_string(),
            proxy: proxy_for(&endpoint),
            hint: crate::ec2::failures::FLEET_POLICY_HINT,
        }
    }
}

impl Ec2Api {
    /// Credentials come from the default chain (environment, profile, web identity, container), ending with
    /// the instance role read through `imds`, so the run's one IMDS token serves credentials too.
    pub async fn new(region: &str, imds: aws_config::imds::Client) -> Self {
        let region = aws_config::Region::new(region.to_string());
        let credentials = DefaultCredentialsChain::builder().region(region.clone()).imds_client(imds).build().await;
        let sdk = loader().region(region.clone()).credentials_provider(credentials).load().await;
        let endpoint = crate::config::ec2_endpoint(region.as_ref());
        Ec2Api {
            client: aws_sdk_ec2::Client::new(&sdk),
            autoscaling: aws_sdk_autoscaling::Client::new(&sdk),
            region: region.to_string(),
            proxy: proxy_for(&endpoint),
            hint: crate::ec2::failures::POLICY_HINT,
        }
    }
}

/// `scheme://host:port` of the proxy that `HTTPS_PROXY`, `HTTP_PROXY` or `ALL_PROXY` (less `NO_PROXY`) give
/// for `endpoint`, without any user name or password in it.
pub fn proxy_for(endpoint: &str) -> Option<String> {
    let uri: http::Uri = endpoint.parse().ok()?;
    let intercept = hyper_util::client::proxy::matcher::Matcher::from_env().intercept(&uri)?;
    let proxy = intercept.uri();
    let port = proxy.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{}{port}", proxy.scheme_str().unwrap_or("http"), proxy.host().unwrap_or("?")))
}

impl Ec2 for Ec2Api {
    async fn describe_instance(&self, instance_id: &str) -> Result<Described> {
        tracing::trace!(%instance_id, "ec2:DescribeInstances");
        let out = self
            .client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| self.error("DescribeInstances", instance_id, e))?;
        // A truncated answer parses as fewer reservations or instances: only a complete one may say "not
        // found". EC2 gives every reservation its id and every instance its id.
        let complete = out
            .reservations()
            .iter()
            .all(|r| r.reservation_id().is_some() && r.instances().iter().all(|i| i.instance_id().is_some()));
        if !complete {
            return Err(incomplete());
        }
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| Error::InstanceNotFound {
                instance_id: instance_id.into(),
                region: self.region.clone(),
                detail: "EC2's complete DescribeInstances answer did not include it".into(),
            })?;
        Ok(Described {
            instance_id: answered_id(instance_id)?,
            state: instance_state(instance.state().and_then(|s| s.name())),
            options: instance.metadata_options().map(options_from).unwrap_or_default(),
            source: source_of(instance.tags()),
        })
    }

    async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool) -> Result<Modified> {
        tracing::debug!(%instance_id, ?change, dry_run, "ec2:ModifyInstanceMetadataOptions");
        let result = self
            .client
            .modify_instance_metadata_options()
            .instance_id(instance_id)
            .set_http_put_response_hop_limit(change.hop_limit.map(|h| i32::from(h.get())))
            .set_http_tokens(change.http_tokens.map(|t| HttpTokensState::from(t.as_str())))
            .set_http_endpoint(change.http_endpoint.map(|t| InstanceMetadataEndpointState::from(t.as_str())))
            .set_http_protocol_ipv6(change.ipv6_endpoint.map(|t| InstanceMetadataProtocolState::from(t.as_str())))
            .set_instance_metadata_tags(change.instance_tags.map(|t| InstanceMetadataTagsState::from(t.as_str())))
            .dry_run(dry_run)
            .send()
            .await;
        match result {
            Ok(_) if dry_run => {
                // EC2 always answers a dry run with an error; an emulator may not.
                tracing::warn!("EC2 answered the dry run with a change; treating it as authorized");
                Ok(Modified::WouldSucceed)
            }
            Ok(out) => Ok(Modified::Accepted(out.instance_metadata_options().map(options_from).unwrap_or_default())),
            Err(e) if dry_run && e.code() == Some("DryRunOperation") => Ok(Modified::WouldSucceed),
            Err(e) => Err(self.error("ModifyInstanceMetadataOptions", instance_id, e)),
        }
    }
}

impl Fleet for Ec2Api {
    async fn select(&self, filters: &[Filter], next: Option<&str>) -> Result<Page> {
        // The page token is EC2's opaque text: never shown, at any level.
        tracing::trace!(?filters, next_page = next.is_some(), "ec2:DescribeInstances (page)");
        let mut request = self.client.describe_instances().max_results(PAGE).set_next_token(next.map(str::to_string));
        for f in filters {
            request = request.filters(
                aws_sdk_ec2::types::Filter::builder().name(&f.name).set_values(Some(f.values.clone())).build(),
            );
        }
        let out = request.send().await.map_err(|e| self.error("DescribeInstances", "the selection", e))?;
        let mut instances = Vec::new();
        for reservation in out.reservations() {
            if reservation.reservation_id().is_none() {
                return Err(incomplete());
            }
            for i in reservation.instances() {
                let Some(id) = i.instance_id() else { return Err(incomplete()) };
                instances.push(Described {
                    instance_id: answered_id(id)?,
                    state: instance_state(i.state().and_then(|s| s.name())),
                    options: i.metadata_options().map(options_from).unwrap_or_default(),
                    source: source_of(i.tags()),
                });
            }
        }
        // A page token is EC2's opaque text: bounded, and never shown.
        let next = out.next_token().filter(|t| !t.is_empty() && t.len() <= 4096).map(str::to_string);
        Ok(Page { instances, next })
    }
}

/// Where an instance came from, by its tags (`source::Source::from_tags` makes their values safe).
fn source_of(tags: &[aws_sdk_ec2::types::Tag]) -> crate::source::Source {
    crate::source::Source::from_tags(tags.iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))))
}

/// An instance id as EC2 answered it: remote text, kept only with an instance id's shape.
fn answered_id(id: &str) -> Result<InstanceId> {
    id.parse::<InstanceId>().map_err(|_| Error::Call {
        operation: "DescribeInstances",
        failure: Failure {
            message: Some(format!("an instance id that is not one: {:?}", remote::sanitize(id, 40))),
            ..Failure::new(Service::Ec2, FailureKind::Malformed)
        },
    })
}

fn incomplete() -> Error {
    let mut failure = Failure::new(Service::Ec2, FailureKind::Malformed);
    failure.message = Some("an incomplete DescribeInstances answer (a reservation or instance without its id)".into());
    Error::Call { operation: "DescribeInstances", failure }
}

impl Defaults for Ec2Api {
    async fn regions(&self) -> Result<Vec<Region>> {
        let out =
            self.client.describe_regions().send().await.map_err(|e| self.error("DescribeRegions", &self.region, e))?;
        let mut regions = Vec::new();
        for r in out.regions() {
            let name = r.region_name().unwrap_or_default();
            match name.parse::<Region>() {
                Ok(name) => regions.push(name),
                Err(_) => tracing::warn!(
                    "DescribeRegions listed {:?}, which is not a region name; skipped",
                    remote::sanitize(name, 40)
                ),
            }
        }
        regions.sort();
        regions.dedup();
        Ok(regions)
    }

    async fn defaults(&self) -> Result<AccountDefaults> {
        let out = self
            .client
            .get_instance_metadata_defaults()
            .send()
            .await
            .map_err(|e| self.error("GetInstanceMetadataDefaults", &self.region, e))?;
        let Some(d) = out.account_level() else { return Ok(AccountDefaults::default()) };
        let options = MetadataOptions {
            state: None,
            http_tokens: d.http_tokens().and_then(tokens),
            hop_limit: d.http_put_response_hop_limit().and_then(|h| HopLimit::new(i64::from(h))),
            http_endpoint: d.http_endpoint().and_then(|t| toggle("HttpEndpoint", t.as_str())),
            ipv6_endpoint: None,
            instance_tags: d.instance_metadata_tags().and_then(|t| toggle("InstanceMetadataTags", t.as_str())),
        };
        Ok(AccountDefaults {
            options,
            managed_by: d.managed_by().map(|m| match m {
                aws_sdk_ec2::types::ManagedBy::Account => ManagedBy::Account,
                aws_sdk_ec2::types::ManagedBy::DeclarativePolicy => ManagedBy::DeclarativePolicy,
                other => unknown("ManagedBy", other.as_str()).unwrap_or(ManagedBy::Unknown),
            }),
            managed_message: d.managed_exception_message().map(|m| remote::sanitize(m, 300)),
        })
    }

    async fn modify_defaults(&self, change: &Change) -> Result<()> {
        use aws_sdk_ec2::types::DefaultInstanceMetadataEndpointState as Endpoint;
        use aws_sdk_ec2::types::DefaultInstanceMetadataTagsState as Tags;
        use aws_sdk_ec2::types::MetadataDefaultHttpTokensState as Tokens;
        tracing::debug!(?change, region = %self.region, "ec2:ModifyInstanceMetadataDefaults");
        self.client
            .modify_instance_metadata_defaults()
            .set_http_put_response_hop_limit(change.hop_limit.map(|h| i32::from(h.get())))
            .set_http_tokens(change.http_tokens.map(|t| Tokens::from(t.as_str())))
            .set_http_endpoint(change.http_endpoint.map(|t| Endpoint::from(t.as_str())))
            .set_instance_metadata_tags(change.instance_tags.map(|t| Tags::from(t.as_str())))
            .send()
            .await
            .map_err(|e| self.error("ModifyInstanceMetadataDefaults", &self.region, e))?;
        Ok(())
    }
}
