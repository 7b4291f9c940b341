//! The EC2 side, over aws-sdk-ec2: the only file that sees SDK types and SDK errors.

use crate::error::{Error, Failure, FailureKind, Result, chain};
use crate::ids::{InstanceId, Region};
use crate::plan::{Change, HopLimit, HttpTokens, InstanceState, MetadataOptions, State, Toggle};
use crate::remote;
use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    HttpTokensState, InstanceMetadataEndpointState, InstanceMetadataOptionsResponse, InstanceMetadataOptionsState,
    InstanceMetadataProtocolState, InstanceMetadataTagsState,
};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

/// What the rest of the program needs from EC2 for one instance.
pub trait Ec2 {
    /// The instance's life-cycle state with its options: a stopped instance applies a change when it starts,
    /// a terminated one never will.
    async fn describe_instance(&self, instance_id: &str) -> Result<(InstanceState, MetadataOptions)>;
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
    region: String,
    /// The proxy the EC2 calls go through, if any, to name it when it fails.
    proxy: Option<String>,
    /// Which policy a refusal points at: the instance's or the fleet commands'.
    hint: &'static str,
}

/// The SDK settings every EC2 client shares: one attempt per call (`Patient`, reconcile.rs, retries with
/// full jitter until the deadline), a short connect timeout and a bound on each attempt.
fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .time_source(Clock)
}

/// The time requests are signed with: this machine's clock, corrected by what EC2's answers showed it to be
/// off by. Early in boot, before chrony steps the clock, it can be off by hours, and EC2 refuses a request
/// signed more than 5 minutes away from its own time (RequestExpired, RequestTimeTooSkewed). The SDK
/// corrects for that only inside its own retries, which are off here (`Patient` retries), so the
/// correction is kept for the whole process: one clock, one offset.
#[derive(Debug)]
struct Clock;

/// Milliseconds to add to the system clock.
static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);
/// Corrections made so far: a skew that does not go away after `MAX_CLOCK_CORRECTIONS` is the clock's fault
/// (or EC2's), and the run ends with the clock advice.
static CLOCK_CORRECTIONS: AtomicU32 = AtomicU32::new(0);
const MAX_CLOCK_CORRECTIONS: u32 = 2;
static CLOCK_RETRIES_AFTER_CORRECTION: AtomicU32 = AtomicU32::new(0);
/// A smaller difference between EC2's `Date` and this clock cannot be why EC2 refused the time.
const MIN_CLOCK_CORRECTION: Duration = Duration::from_secs(60);

impl Clock {
    fn now() -> SystemTime {
        let offset = CLOCK_OFFSET_MS.load(Ordering::Relaxed);
        let now = SystemTime::now();
        if offset >= 0 {
            now + Duration::from_millis(offset.unsigned_abs())
        } else {
            now - Duration::from_millis(offset.unsigned_abs())
        }
    }

    /// EC2 refused the request's time and answered with its own in `date` (an HTTP date): corrects the clock
    /// by the difference and says so, unless the difference is too small to be the reason or the clock has
    /// been corrected as often as it may be. Whether it corrected.
    fn correct(date: Option<&str>) -> bool {
        let Some(server) = date
            .and_then(|d| aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::HttpDate).ok())
            .and_then(|d| SystemTime::try_from(d).ok())
        else {
            return false;
        };
        let ours = Clock::now();
        let (ahead, skew) = match server.duration_since(ours) {
            Ok(d) => (true, d),
            Err(e) => (false, e.duration()),
        };
        if skew > Duration::from_secs(10 * 365 * 86_400) {
            return false;
        }
        if skew < MIN_CLOCK_CORRECTION {
            // This call was signed before another one corrected the clock (a fleet's regions start side by
            // side): try again with the corrected clock, a bounded number of times in all.
            return CLOCK_CORRECTIONS.load(Ordering::Relaxed) > 0
                && CLOCK_RETRIES_AFTER_CORRECTION.fetch_add(1, Ordering::Relaxed) < 64;
        }
        if CLOCK_CORRECTIONS.fetch_add(1, Ordering::Relaxed) >= MAX_CLOCK_CORRECTIONS {
            return false;
        }
        let ms = i64::try_from(skew.as_millis()).unwrap_or(i64::MAX);
        CLOCK_OFFSET_MS.fetch_add(if ahead { ms } else { -ms }, Ordering::Relaxed);
        tracing::warn!(
            "EC2 refused the request's time: this clock is {:.0} s {} EC2's (the Date of its answer); signing with \
             EC2's time from now on and trying again. Set the clock right (`chronyc tracking`, `timedatectl`)",
            skew.as_secs_f64(),
            if ahead { "behind" } else { "ahead of" }
        );
        true
    }
}

impl aws_smithy_async::time::TimeSource for Clock {
    fn now(&self) -> SystemTime {
        Clock::now()
    }
}

/// The account's settings for the fleet and defaults commands: credentials and the default region from the
/// default chain (environment, `AWS_PROFILE`, SSO, web identity, container, instance role).
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
        Ec2Api {
            client: aws_sdk_ec2::Client::from_conf(config),
            region: region.to_string(),
            proxy: proxy_for(&endpoint),
            hint: crate::error::FLEET_POLICY_HINT,
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
            region: region.to_string(),
            proxy: proxy_for(&endpoint),
            hint: crate::error::POLICY_HINT,
        }
    }

    fn error<E>(
        &self,
        operation: &'static str,
        instance_id: &str,
        err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if let Some(cause) = chain(&err).find_map(|e| e.downcast_ref::<CredentialsError>()) {
            return Error::NoCredentials { detail: credentials_failure(cause) };
        }
        // The SDK's own bound on finding credentials (its identity cache, 5 s): no provider answered in time.
        if remote::root_cause(&err, 80).starts_with("identity resolver timed out") {
            return Error::NoCredentials {
                detail: "no credentials within 5 s: the default chain's providers (the instance role's, through IMDS, \
                         among them) did not answer in time"
                    .into(),
            };
        }
        let failure = failure(&err, self.proxy.as_deref());
        let time_refused = match failure.code.as_deref() {
            Some("RequestExpired" | "RequestTimeTooSkewed") => true,
            Some("SignatureDoesNotMatch") => {
                failure.message.as_deref().is_some_and(|m| m.contains("expired") || m.contains("time"))
            }
            _ => false,
        };
        if time_refused && Clock::correct(err.raw_response().and_then(|r| r.headers().get("date"))) {
            return Error::Ec2 { operation, failure: Failure { kind: FailureKind::Skewed, ..failure } };
        }
        match failure.code.as_deref() {
            Some("UnauthorizedOperation") => Error::NotAuthorized {
                action: operation,
                instance_id: instance_id.into(),
                encoded: err.message().and_then(encoded_authorization_message),
                refusal: err.message().and_then(crate::error::Refusal::parse),
                hint: self.hint,
            },
            _ if time_refused => Error::ClockSkew { failure },
            Some(
                "AuthFailure"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "UnrecognizedClientException",
            ) => Error::NoCredentials { detail: format!("EC2 refused the credentials: {failure}") },
            Some(code) if code.starts_with("InvalidInstanceID") => Error::InstanceNotFound {
                instance_id: instance_id.into(),
                region: self.region.clone(),
                detail: failure.to_string(),
            },
            _ => Error::Ec2 { operation, failure },
        }
    }
}

/// What is safe to show of an SDK error: the kind, status, EC2's code and message, sanitized, and the
/// request id. `DisplayErrorContext` is not used: it renders the raw response, body and headers included.
fn failure<E>(err: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>, proxy: Option<&str>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let mut failure = Failure {
        kind: FailureKind::Local,
        status,
        code: err.code().map(|c| remote::sanitize(c, 64)),
        message: err.message().map(|m| remote::sanitize(m.split(ENCODED_PREFIX).next().unwrap_or(m), 300)),
        request_id: err.request_id().and_then(remote::request_id),
    };
    failure.kind = match err {
        // The answer could not be read to its end (the connection closed mid-body): whatever its status
        // said, EC2 may have done the call, and another try usually gets a whole answer.
        SdkError::ResponseError(_) => {
            failure.message = Some("the connection closed before the whole answer was read".into());
            FailureKind::Cut
        }
        SdkError::ServiceError(_) => {
            let throttled =
                status == Some(429) || failure.code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c));
            match status {
                _ if throttled => FailureKind::Throttled,
                Some(500..=599) => FailureKind::ServerError,
                // A success status whose body could not be read as the answer.
                Some(200..=299) => FailureKind::Malformed,
                _ => FailureKind::Refused,
            }
        }
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(dispatch) => {
            // The innermost cause says what happened: refused, reset, unknown issuer, ...
            let root = remote::root_cause(err, 200);
            let lower = root.to_ascii_lowercase();
            failure.message = Some(root.clone());
            let incomplete =
                chain(err).find_map(|e| e.downcast_ref::<hyper::Error>()).is_some_and(|h| h.is_incomplete_message());
            if TLS_WORDS.iter().any(|w| lower.contains(w)) {
                FailureKind::Tls
            } else if incomplete {
                // The request went out; the answer (or its end) never came whole.
                failure.message = Some("the connection closed before the whole answer was read".into());
                FailureKind::Cut
            } else if dispatch.is_timeout() {
                FailureKind::Timeout
            } else if let Some(proxy) = proxy {
                failure.message = Some(format!("through the proxy {proxy}: {root}"));
                FailureKind::Proxy
            } else if dispatch.is_io() {
                FailureKind::Connect
            } else {
                FailureKind::Local
            }
        }
        _ => FailureKind::Local,
    };
    if failure.kind == FailureKind::Malformed {
        let bytes = err.raw_response().and_then(|r| r.body().bytes()).map_or(0, <[u8]>::len);
        failure.message = Some(format!("{bytes} bytes that are not an EC2 answer"));
    }
    failure
}

/// How rustls names a failed handshake (an untrusted or mismatched certificate, a peer that does not speak
/// TLS, an alert): no retry heals these.
const TLS_WORDS: &[&str] = &["certificate", "tls", "handshake", "corrupt message", "alert", "invalidcontenttype"];

/// EC2's codes for an account over its request budget (the EC2 API reference, "Common client errors").
const THROTTLING_CODES: &[&str] =
    &["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequestsException"];

const ENCODED_PREFIX: &str = "Encoded authorization failure message:";

/// The encoded message of an UnauthorizedOperation, which `aws sts decode-authorization-message` turns into
/// the statement that refused the call. It is shown whole, so it is kept only when it has the shape EC2 gives
/// it: URL-safe base64 without padding, hundreds of characters long (it carries the whole request context,
/// encrypted). Everything secret that a request carries has another shape: an access key id is 20
/// characters, a secret key 40 and an IMDS token 56, and those and session tokens are standard base64 with
/// `+`, `/` or `=`, except access key ids, which are refused wherever they stand in it (`AKIA`, `ASIA`, ...
/// and 16 capitals or digits; in a real message, by chance, as likely as 20 given characters). Anything else
/// there is shown as absent.
fn encoded_authorization_message(message: &str) -> Option<String> {
    let encoded = message.split_once(ENCODED_PREFIX)?.1.trim();
    let ok = (ENCODED_MIN..=8192).contains(&encoded.len())
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && !holds_access_key_id(encoded);
    ok.then(|| encoded.to_string())
}

/// Whether `text` holds something shaped like an AWS access key id: a known four-letter prefix, then 16
/// capitals or digits.
fn holds_access_key_id(text: &str) -> bool {
    const PREFIXES: [&str; 11] =
        ["AKIA", "ASIA", "AROA", "AIDA", "AGPA", "AIPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA"];
    let b = text.as_bytes();
    (0..b.len().saturating_sub(19)).any(|i| {
        PREFIXES.iter().any(|p| b[i..].starts_with(p.as_bytes()))
            && b[i + 4..i + 20].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

const ENCODED_MIN: usize = 128;

/// Why no credentials could be had, in this program's words: which kind of failure, and for the instance
/// role the status IMDS answered, never the provider's own rendering of it (that prints IMDS's whole error
/// response, whose page can echo the request's token header). What remains of the provider's words goes
/// through `remote`, cut before any dump of a response.
pub fn credentials_failure(cause: &CredentialsError) -> String {
    use aws_config::imds::client::error::ImdsError;
    let imds = chain(cause).find_map(|e| e.downcast_ref::<ImdsError>());
    let mut detail = match (imds, cause) {
        (Some(ImdsError::ErrorResponse(r)), _) => format!(
            "the instance metadata service answered HTTP {} to the request for the instance role's credentials",
            r.response().status().as_u16()
        ),
        (Some(ImdsError::FailedToLoadToken(_)), _) => {
            "no IMDSv2 token for the request for the instance role's credentials".into()
        }
        (Some(ImdsError::IoError(_)), _) => {
            "the instance metadata service could not be reached for the instance role's credentials".into()
        }
        (Some(_), _) => "the instance role's credentials could not be read from the instance metadata service".into(),
        (None, CredentialsError::CredentialsNotLoaded(_)) => format!(
            "none of the environment, a profile, web identity, the container or the instance role gave any ({})",
            remote::root_cause(cause, 200)
        ),
        (None, CredentialsError::ProviderTimedOut(_)) => "the credentials provider did not answer in time".into(),
        (None, CredentialsError::InvalidConfiguration(_)) => {
            format!("the credentials configuration is invalid: {}", remote::root_cause(cause, 200))
        }
        (None, _) => format!("the credentials provider failed: {}", remote::root_cause(cause, 200)),
    };
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        detail.push_str(
            "; AWS_EC2_METADATA_DISABLED=true is set, which keeps the SDK from reading the instance role's \
             credentials from IMDS: unset it",
        );
    }
    detail
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
    async fn describe_instance(&self, instance_id: &str) -> Result<(InstanceState, MetadataOptions)> {
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
        let state = instance_state(instance.state().and_then(|s| s.name()));
        Ok((state, instance.metadata_options().map(options_from).unwrap_or_default()))
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
                let Ok(instance_id) = id.parse::<InstanceId>() else {
                    return Err(Error::Ec2 {
                        operation: "DescribeInstances",
                        failure: Failure {
                            message: Some(format!("an instance id that is not one: {:?}", remote::sanitize(id, 40))),
                            ..Failure::new(FailureKind::Malformed)
                        },
                    });
                };
                instances.push(Described {
                    instance_id,
                    state: instance_state(i.state().and_then(|s| s.name())),
                    options: i.metadata_options().map(options_from).unwrap_or_default(),
                });
            }
        }
        // A page token is EC2's opaque text: bounded, and never shown.
        let next = out.next_token().filter(|t| !t.is_empty() && t.len() <= 4096).map(str::to_string);
        Ok(Page { instances, next })
    }
}

fn incomplete() -> Error {
    let mut failure = Failure::new(FailureKind::Malformed);
    failure.message = Some("an incomplete DescribeInstances answer (a reservation or instance without its id)".into());
    Error::Ec2 { operation: "DescribeInstances", failure }
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

fn options_from(o: &InstanceMetadataOptionsResponse) -> MetadataOptions {
    MetadataOptions {
        state: o.state().and_then(|s| match s {
            InstanceMetadataOptionsState::Applied => Some(State::Applied),
            InstanceMetadataOptionsState::Pending => Some(State::Pending),
            other => unknown("state", other.as_str()),
        }),
        http_tokens: o.http_tokens().and_then(tokens),
        hop_limit: o
            .http_put_response_hop_limit()
            .and_then(|h| HopLimit::new(i64::from(h)).or_else(|| unknown("HttpPutResponseHopLimit", &h.to_string()))),
        http_endpoint: o.http_endpoint().and_then(|t| toggle("HttpEndpoint", t.as_str())),
        ipv6_endpoint: o.http_protocol_ipv6().and_then(|t| toggle("HttpProtocolIpv6", t.as_str())),
        instance_tags: o.instance_metadata_tags().and_then(|t| toggle("InstanceMetadataTags", t.as_str())),
    }
}

fn tokens(t: &HttpTokensState) -> Option<HttpTokens> {
    match t {
        HttpTokensState::Required => Some(HttpTokens::Required),
        HttpTokensState::Optional => Some(HttpTokens::Optional),
        other => unknown("HttpTokens", other.as_str()),
    }
}

fn toggle(field: &str, value: &str) -> Option<Toggle> {
    match value {
        "enabled" => Some(Toggle::Enabled),
        "disabled" => Some(Toggle::Disabled),
        other => unknown(field, other),
    }
}

fn instance_state(name: Option<&aws_sdk_ec2::types::InstanceStateName>) -> InstanceState {
    use aws_sdk_ec2::types::InstanceStateName as Name;
    match name {
        Some(Name::Pending) => InstanceState::Pending,
        Some(Name::Running) => InstanceState::Running,
        Some(Name::ShuttingDown) => InstanceState::ShuttingDown,
        Some(Name::Terminated) => InstanceState::Terminated,
        Some(Name::Stopping) => InstanceState::Stopping,
        Some(Name::Stopped) => InstanceState::Stopped,
        Some(other) => unknown("the instance state", other.as_str()).unwrap_or(InstanceState::Unknown),
        None => InstanceState::Unknown,
    }
}

/// A value this build does not know is treated like a field EC2 left out: unknown. The value is remote text,
/// shown only as `remote::value` makes it: one short line, redacted.
fn unknown<T>(field: &str, value: &str) -> Option<T> {
    tracing::warn!(
        "EC2 reported {field} {:?}, which this version does not know; treating it as unknown",
        remote::value(value)
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_encoded_message_is_kept_only_in_the_shape_ec2_gives_it() {
        let real = format!("{ENCODED_PREFIX} {}", "4GIOHlTkIaWHQD0Q0m6XSnuUMCm-abPZDWKfnyvW-cmeh5SqT7J2Hx_G".repeat(4));
        assert!(encoded_authorization_message(&real).is_some());
        for echo in [
            "AKIAIOSFODNN7EXAMPLE".to_string(),
            "AKIAIOSFODNN7EXAMPLE".repeat(10),
            format!("x{}", "ASIAIOSFODNN7EXAMPLE".repeat(8)),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".repeat(4),
            "AQAEAFTNrA4eEGx0AQgJ1arIq_Cg==".repeat(6),
        ] {
            assert_eq!(encoded_authorization_message(&format!("{ENCODED_PREFIX} {echo}")), None, "{echo}");
        }
    }
}
