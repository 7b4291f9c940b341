//! SDK values as this program's types: a value this build does not know is unknown, and shown only bounded.

use crate::plan::{HopLimit, HttpTokens, InstanceState, MetadataOptions, State, Toggle};
use crate::remote;
use aws_sdk_ec2::types::{HttpTokensState, InstanceMetadataOptionsResponse, InstanceMetadataOptionsState};

pub(super) fn options_from(o: &InstanceMetadataOptionsResponse) -> MetadataOptions {
    MetadataOptions {
        state: o.state().and_then(|s| match s {
            InstanceMetadataOptionsState::Applied => Some(State::Applied),
            InstanceMetadataOptionsState::Pending => Some(State::Pending),
            other => unknown("state", other.as_str()),
        }),
        http_tokens: o.http_tokens().and_then(tokens),
        hop_limit: o.http_put_response_hop_limit().and_then(hop_limit),
        http_endpoint: o.http_endpoint().and_then(|t| toggle("HttpEndpoint", t.as_str())),
        ipv6_endpoint: o.http_protocol_ipv6().and_then(|t| toggle("HttpProtocolIpv6", t.as_str())),
        instance_tags: o.instance_metadata_tags().and_then(|t| toggle("InstanceMetadataTags", t.as_str())),
    }
}

/// A hop limit as EC2 answered it (an instance's or a launch template's): one out of 1..=64 is unknown.
pub(super) fn hop_limit(h: i32) -> Option<HopLimit> {
    HopLimit::new(i64::from(h)).or_else(|| unknown("HttpPutResponseHopLimit", &h.to_string()))
}

pub(super) fn tokens(t: &HttpTokensState) -> Option<HttpTokens> {
    match t {
        HttpTokensState::Required => Some(HttpTokens::Required),
        HttpTokensState::Optional => Some(HttpTokens::Optional),
        other => unknown("HttpTokens", other.as_str()),
    }
}

pub(super) fn toggle(field: &str, value: &str) -> Option<Toggle> {
    match value {
        "enabled" => Some(Toggle::Enabled),
        "disabled" => Some(Toggle::Disabled),
        other => unknown(field, other),
    }
}

pub(super) fn instance_state(name: Option<&aws_sdk_ec2::types::InstanceStateName>) -> InstanceState {
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
pub(super) fn unknown<T>(field: &str, value: &str) -> Option<T> {
    tracing::warn!(
        "EC2 reported {field} {:?}, which this version does not know; treating it as unknown",
        remote::value(value)
    );
    None
}
