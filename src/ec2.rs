//! The EC2 side, over aws-sdk-ec2: the only file that sees SDK types and SDK errors.

use crate::error::{Error, Result, chain};
use crate::plan::{Change, HopLimit, HttpTokens, MetadataOptions, State, Toggle};
use aws_config::BehaviorVersion;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
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
}

/// Throttling (RequestLimitExceeded) and 5xx answers are retried by the SDK's standard strategy.
const MAX_ATTEMPTS: u32 = 5;

impl Ec2Api {
    /// Credentials come from the default chain (environment, profile, web identity, container), ending with
    /// the instance role read through `imds`, so the run's one IMDS token serves credentials too.
    pub async fn new(region: &str, imds: aws_config::imds::Client) -> Self {
        let region = aws_config::Region::new(region.to_string());
        let credentials = DefaultCredentialsChain::builder().region(region.clone()).imds_client(imds).build().await;
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(credentials)
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .build(),
            )
            .load()
            .await;
        Ec2Api { client: aws_sdk_ec2::Client::new(&sdk), region: region.to_string() }
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
        let detail = DisplayErrorContext(&err).to_string();
        let code = err.code().map(str::to_string);
        match code.as_deref() {
            Some("UnauthorizedOperation") => {
                return Error::NotAuthorized { action: operation, instance_id: instance_id.into() };
            }
            Some("AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken") => {
                return Error::NoCredentials { detail: format!("EC2 refused the credentials: {detail}") };
            }
            Some(code) if code.starts_with("InvalidInstanceID") => {
                return Error::InstanceNotFound {
                    instance_id: instance_id.into(),
                    region: self.region.clone(),
                    detail: err.message().unwrap_or(code).to_string(),
                };
            }
            _ => {}
        }
        if chain(&err).any(|e| e.is::<CredentialsError>()) {
            return Error::NoCredentials { detail };
        }
        Error::Ec2 { operation, detail }
    }
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
        let instance = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
            .ok_or_else(|| Error::InstanceNotFound {
                instance_id: instance_id.into(),
                region: self.region.clone(),
                detail: "DescribeInstances returned no such instance".into(),
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
            Ok(out) if dry_run => {
                // EC2 always answers a dry run with an error; an emulator may not.
                tracing::warn!(response = ?out.instance_metadata_options(), "EC2 answered the dry run with a change; treating it as authorized");
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
