//! The EC2 side, over aws-sdk-ec2: the only file that sees SDK types and SDK errors.

use crate::error::{Error, Failure, FailureKind, Result, chain};
use crate::plan::{Change, HopLimit, HttpTokens, MetadataOptions, State, Toggle};
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
use std::time::Duration;

/// What the rest of the program needs from EC2.
pub trait Ec2 {
    async fn describe(&self, instance_id: &str) -> Result<MetadataOptions>;
    /// Sends `change`; with `dry_run`, only asks whether it would be authorized.
    async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool) -> Result<Modified>;
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
}

impl Ec2Api {
    /// Credentials come from the default chain (environment, profile, web identity, container), ending with
    /// the instance role read through `imds`, so the run's one IMDS token serves credentials too. The SDK
    /// makes one attempt per call: `Patient` (reconcile.rs) retries, with full jitter, until the deadline.
    pub async fn new(region: &str, imds: aws_config::imds::Client) -> Self {
        let region = aws_config::Region::new(region.to_string());
        let credentials = DefaultCredentialsChain::builder().region(region.clone()).imds_client(imds).build().await;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(credentials)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .load()
            .await;
        let endpoint = crate::config::ec2_endpoint(region.as_ref());
        Ec2Api { client: aws_sdk_ec2::Client::new(&sdk), region: region.to_string(), proxy: proxy_for(&endpoint) }
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
            return Error::NoCredentials { detail: credentials_detail(cause) };
        }
        let failure = failure(&err, self.proxy.as_deref());
        match failure.code.as_deref() {
            Some("UnauthorizedOperation") => Error::NotAuthorized {
                action: operation,
                instance_id: instance_id.into(),
                encoded: err.message().and_then(encoded_authorization_message),
            },
            Some("RequestExpired" | "RequestTimeTooSkewed") => Error::ClockSkew { failure },
            Some("SignatureDoesNotMatch")
                if failure.message.as_deref().is_some_and(|m| m.contains("expired") || m.contains("time")) =>
            {
                Error::ClockSkew { failure }
            }
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
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => {
            let throttled =
                status == Some(429) || failure.code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c));
            match status {
                _ if throttled => FailureKind::Throttled,
                Some(500..=599) => FailureKind::ServerError,
                // A success status whose body could not be read as the answer.
                Some(200..=299) => FailureKind::Malformed,
                _ if matches!(err, SdkError::ResponseError(_)) => FailureKind::Malformed,
                _ => FailureKind::Refused,
            }
        }
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(dispatch) => {
            // The innermost cause says what happened: refused, reset, unknown issuer, ...
            let root = remote::root_cause(err, 200);
            let lower = root.to_ascii_lowercase();
            failure.message = Some(root.clone());
            if TLS_WORDS.iter().any(|w| lower.contains(w)) {
                FailureKind::Tls
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
/// the statement that refused the call. Kept only when it has the shape EC2 gives it.
fn encoded_authorization_message(message: &str) -> Option<String> {
    let encoded = message.split_once(ENCODED_PREFIX)?.1.trim();
    let ok = !encoded.is_empty()
        && encoded.len() <= 8192
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'+' | b'/' | b'='));
    ok.then(|| encoded.to_string())
}

fn credentials_detail(cause: &CredentialsError) -> String {
    let mut detail = remote::root_cause(cause, 300);
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
    async fn describe(&self, instance_id: &str) -> Result<MetadataOptions> {
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
            let mut failure = Failure::new(FailureKind::Malformed);
            failure.message =
                Some("an incomplete DescribeInstances answer (a reservation or instance without its id)".into());
            return Err(Error::Ec2 { operation: "DescribeInstances", failure });
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
        Ok(instance.metadata_options().map(options_from).unwrap_or_default())
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

fn options_from(o: &InstanceMetadataOptionsResponse) -> MetadataOptions {
    MetadataOptions {
        state: o.state().and_then(|s| match s {
            InstanceMetadataOptionsState::Applied => Some(State::Applied),
            InstanceMetadataOptionsState::Pending => Some(State::Pending),
            other => unknown("state", other.as_str()),
        }),
        http_tokens: o.http_tokens().and_then(|t| match t {
            HttpTokensState::Required => Some(HttpTokens::Required),
            HttpTokensState::Optional => Some(HttpTokens::Optional),
            other => unknown("HttpTokens", other.as_str()),
        }),
        hop_limit: o
            .http_put_response_hop_limit()
            .and_then(|h| HopLimit::new(i64::from(h)).or_else(|| unknown("HttpPutResponseHopLimit", &h.to_string()))),
        http_endpoint: o.http_endpoint().and_then(|t| toggle("HttpEndpoint", t.as_str())),
        ipv6_endpoint: o.http_protocol_ipv6().and_then(|t| toggle("HttpProtocolIpv6", t.as_str())),
        instance_tags: o.instance_metadata_tags().and_then(|t| toggle("InstanceMetadataTags", t.as_str())),
    }
}

fn toggle(field: &str, value: &str) -> Option<Toggle> {
    match value {
        "enabled" => Some(Toggle::Enabled),
        "disabled" => Some(Toggle::Disabled),
        other => unknown(field, other),
    }
}

/// A value this build does not know is treated like a field EC2 left out: unknown.
fn unknown<T>(field: &str, value: &str) -> Option<T> {
    tracing::warn!("EC2 reported {field}={value:?}, which this version does not know; treating it as unknown");
    None
}
