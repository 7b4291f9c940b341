//! What a failed AWS call is, in this program's terms: the service, the kind of failure (and so whether and
//! how it is retried), what of it is safe to show, and the policy that refused a call, with whose it is to
//! change. Made by the classifier (`classify.rs`) from SDK errors; shown by `error::Error`. Knows no SDK type.

use crate::wait::Backoff;
use std::fmt;

/// The fleet and defaults commands' policy.
pub const FLEET_POLICY_HINT: &str = "grant what packaging/iam-fleet-policy.json grants (ec2:DescribeInstances, \
     ec2:DescribeRegions, ec2:ModifyInstanceMetadataOptions, ec2:GetInstanceMetadataDefaults, \
     ec2:ModifyInstanceMetadataDefaults; for templates ec2:DescribeLaunchTemplates, \
     ec2:DescribeLaunchTemplateVersions, autoscaling:DescribeAutoScalingGroups, ec2:CreateLaunchTemplateVersion and \
     ec2:ModifyLaunchTemplate, never on a \
     template Karpenter or EKS owns) to the credentials this command runs with; an SCP or a permissions boundary \
     can refuse it too";

pub const POLICY_HINT: &str = "grant ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions to the instance's role: \
     see packaging/iam-policy.json (installed as /usr/share/doc/imds-hop-limit/iam-policy.json); an SCP or a \
     permissions boundary that caps ec2:MetadataHttpPutResponseHopLimit can refuse it too";

/// The AWS services this program calls: EC2 for instances, STS and Organizations for the accounts of the
/// org-wide commands. Their failures are classified alike (`ec2::classify`) and retried by one loop
/// (`retry.rs`); only the words differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ec2,
    Sts,
    Organizations,
    AutoScaling,
}

impl Service {
    /// As IAM's actions are prefixed (`ec2:DescribeInstances`).
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Ec2 => "ec2",
            Service::Sts => "sts",
            Service::Organizations => "organizations",
            Service::AutoScaling => "autoscaling",
        }
    }

    /// The SDK's name for it in `AWS_ENDPOINT_URL_<NAME>`.
    pub fn endpoint_variable(self) -> &'static str {
        match self {
            Service::Ec2 => "AWS_ENDPOINT_URL_EC2",
            Service::Sts => "AWS_ENDPOINT_URL_STS",
            Service::Organizations => "AWS_ENDPOINT_URL_ORGANIZATIONS",
            Service::AutoScaling => "AWS_ENDPOINT_URL_AUTO_SCALING",
        }
    }

    /// Its budget of requests: EC2's is per account and region, STS's and Organizations' per account.
    pub fn budget(self) -> &'static str {
        match self {
            Service::Ec2 => "EC2's request budget is shared by the whole account and region",
            Service::Sts => "STS's request budget is shared by the whole account",
            Service::Organizations => "the Organizations request budget is shared by the whole organization",
            Service::AutoScaling => "the Auto Scaling request budget is shared by the whole account and region",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Ec2 => "EC2",
            Service::Sts => "STS",
            Service::Organizations => "AWS Organizations",
            Service::AutoScaling => "Auto Scaling",
        })
    }
}

/// What went wrong with one AWS call, as far as it is safe and useful to show: the service, the kind, the
/// HTTP status, the service's error code and message (sanitized) and the request id. Never a body or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub service: Service,
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The service answered that the account is over its request budget (RequestLimitExceeded, HTTP 429, ...).
    Throttled,
    /// A 5xx answer: EC2 (or something on the way) failed; worth another try.
    ServerError,
    /// No answer in time.
    Timeout,
    /// No connection: refused, reset, no route, name not resolved.
    Connect,
    /// The TLS handshake failed (untrusted certificate, wrong name): it cannot heal by retrying.
    Tls,
    /// The configured HTTP(S) proxy could not be reached or refused the tunnel.
    Proxy,
    /// An answer that is not the service's answer (HTML, truncated XML, ...).
    Malformed,
    /// The answer was cut off while it was being read (the connection closed mid-body): EC2 may have
    /// carried the call out, and another try usually gets a whole answer.
    Cut,
    /// EC2 refused the request's time, and the `Date` of its answer showed by how much this clock is off:
    /// the clock is corrected for it and the call tried again (`ec2::Clock`, at most twice a run).
    Skewed,
    /// Any other refusal (4xx) with EC2's own code.
    Refused,
    /// A failure on this side before anything was sent.
    Local,
}

impl Failure {
    pub fn new(service: Service, kind: FailureKind) -> Self {
        Failure { service, kind, status: None, code: None, message: None, request_id: None }
    }

    /// The backoff to retry with, or `None` when retrying cannot help.
    pub fn retry(&self) -> Option<Backoff> {
        match self.kind {
            FailureKind::Throttled => Some(Backoff::THROTTLED),
            FailureKind::ServerError
            | FailureKind::Timeout
            | FailureKind::Connect
            | FailureKind::Proxy
            | FailureKind::Cut
            | FailureKind::Skewed => Some(Backoff::TRANSIENT),
            FailureKind::Tls | FailureKind::Malformed | FailureKind::Refused | FailureKind::Local => None,
        }
    }

    /// A refusal of the credentials' authority (STS's and Organizations' codes for it).
    pub fn denied(&self) -> bool {
        matches!(self.code.as_deref(), Some("AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation"))
    }

    /// A refusal that the operator must act on, not a failure of the way or the service: the credentials'
    /// authority, or STS not activated in the region called for the account (RegionDisabledException).
    pub fn refusal(&self) -> bool {
        self.denied() || self.code.as_deref() == Some("RegionDisabledException")
    }

    /// Whether EC2 may have carried out the call although its answer was a failure: a timeout, a broken
    /// connection or a 5xx after the request was sent. A throttled call was not carried out.
    pub fn maybe_done(&self) -> bool {
        matches!(self.kind, FailureKind::ServerError | FailureKind::Timeout | FailureKind::Connect | FailureKind::Cut)
    }

    /// What kept failing, in words for a message that ends a run: throttling is the account's shared budget;
    /// the others are the way to the service or the service itself.
    pub fn kept(&self) -> String {
        match self.kind {
            FailureKind::Throttled => "throttling this account's requests".into(),
            FailureKind::Connect => format!("refusing or dropping the connection (no connection to {})", self.service),
            FailureKind::Timeout => "not answering in time".into(),
            FailureKind::Proxy => "failing at the proxy".into(),
            FailureKind::Cut => "cutting its answers off".into(),
            FailureKind::Skewed => "refusing this clock's time".into(),
            _ => "failing".into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FailureKind::Throttled => "throttled",
            FailureKind::ServerError => "server error",
            FailureKind::Timeout => "no answer in time",
            FailureKind::Connect => "no connection",
            FailureKind::Tls => "TLS handshake failed",
            FailureKind::Proxy => "proxy failed",
            FailureKind::Malformed => {
                return write!(f, "an answer that is not an {} answer{}", self.service, self.details());
            }
            FailureKind::Cut => "the answer was cut off",
            FailureKind::Skewed => "the request's time was refused",
            FailureKind::Refused => "refused",
            FailureKind::Local => "failed before sending",
        };
        write!(f, "{what}{}", self.details())
    }
}

impl Failure {
    /// Status, code, message and request id, as far as known.
    fn details(&self) -> String {
        let mut out = String::new();
        if let Some(status) = self.status {
            out.push_str(&format!(", HTTP {status}"));
        }
        if let Some(code) = &self.code {
            out.push_str(&format!(", {code}"));
        }
        if let Some(message) = &self.message {
            out.push_str(&format!(": {message}"));
        }
        if let Some(id) = &self.request_id {
            out.push_str(&format!(" (request id {id})"));
        }
        out
    }
}

/// The kind of policy that refused a call, as EC2's UnauthorizedOperation message names it ("... with an
/// explicit deny in a service control policy", "... because no identity-based policy allows the ec2:X
/// action"; the IAM user guide's "Troubleshoot access denied error messages"). Each kind has its own owner
/// and its own remedy, so the advice differs; the ARNs the message carries are never shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub policy: PolicyKind,
    /// An explicit `Deny` (granting more cannot help) rather than no `Allow`.
    pub explicit: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    ServiceControl,
    ResourceControl,
    PermissionsBoundary,
    IdentityBased,
    Session,
    VpcEndpoint,
    ResourceBased,
}

impl PolicyKind {
    /// The kinds, as EC2's messages name them.
    const NAMES: [(&'static str, PolicyKind); 7] = [
        ("service control policy", PolicyKind::ServiceControl),
        ("resource control policy", PolicyKind::ResourceControl),
        ("permissions boundary", PolicyKind::PermissionsBoundary),
        ("identity-based policy", PolicyKind::IdentityBased),
        ("session policy", PolicyKind::Session),
        ("vpc endpoint policy", PolicyKind::VpcEndpoint),
        ("resource-based policy", PolicyKind::ResourceBased),
    ];
}

impl Refusal {
    /// How much of EC2's message is read for the phrases: they stand after the principal's and the
    /// resource's ARNs, a few hundred characters in; the encoded message after them is not read.
    const READ: usize = 2048;

    /// The refusal EC2's message names, found by its fixed phrases only; `None` when it names none.
    pub fn parse(message: &str) -> Option<Refusal> {
        let mut end = message.len().min(Self::READ);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let text = message[..end].to_ascii_lowercase();
        PolicyKind::NAMES.iter().find_map(|(name, policy)| {
            if text.contains(&format!("with an explicit deny in a {name}"))
                || text.contains(&format!("with an explicit deny in an {name}"))
            {
                Some(Refusal { policy: *policy, explicit: true })
            } else if text.contains(&format!("because no {name} allows")) {
                Some(Refusal { policy: *policy, explicit: false })
            } else {
                None
            }
        })
    }

    /// What to do about it, and whose it is to do: `hint` (the policy to grant) where nothing allows the
    /// action or EC2 did not say which policy refused.
    pub fn advice(refusal: Option<&Refusal>, action: &str, hint: &str) -> String {
        let Some(r) = refusal else { return hint.to_string() };
        let (denies, what) =
            if r.explicit { ("denies it explicitly", "the Deny") } else { ("does not allow it", "it") };
        match r.policy {
            PolicyKind::IdentityBased if !r.explicit => format!("no identity-based policy allows it: {hint}"),
            PolicyKind::IdentityBased => {
                "a policy attached to these credentials denies it explicitly: remove or narrow that Deny statement \
                 (granting more cannot override it)"
                    .to_string()
            }
            PolicyKind::ServiceControl | PolicyKind::ResourceControl => format!(
                "a {} of the AWS Organization {denies}: only the organization's administrators can change {what} \
                 (no policy of this account can override it); ask them to allow ec2:{action} for this account",
                if r.policy == PolicyKind::ServiceControl {
                    "service control policy (SCP)"
                } else {
                    "resource control policy (RCP)"
                }
            ),
            PolicyKind::PermissionsBoundary => format!(
                "the permissions boundary of these credentials' role {denies}: the boundary is the role owner's to \
                 change; ask them to allow ec2:{action} in it (a policy attached to the role cannot go past it)"
            ),
            PolicyKind::Session => format!(
                "the session policy these credentials were issued with (AssumeRole's Policy or PolicyArns) {denies}: \
                 issue them without it, or with one that allows ec2:{action}"
            ),
            PolicyKind::VpcEndpoint => format!(
                "the policy of the VPC endpoint these calls go through {denies}: the endpoint's owner can change it"
            ),
            PolicyKind::ResourceBased => format!("a resource-based policy {denies}: its owner can change it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_shows_status_code_message_and_request_id_only() {
        let f = Failure {
            service: Service::Ec2,
            kind: FailureKind::Throttled,
            status: Some(503),
            code: Some("RequestLimitExceeded".into()),
            message: Some("Request limit exceeded.".into()),
            request_id: Some("8f0e7d3c-1b2a".into()),
        };
        assert_eq!(
            f.to_string(),
            "throttled, HTTP 503, RequestLimitExceeded: Request limit exceeded. (request id 8f0e7d3c-1b2a)"
        );
        assert!(f.retry().is_some() && !f.maybe_done());
        assert!(Failure::new(Service::Ec2, FailureKind::Tls).retry().is_none(), "a certificate error cannot heal");
        assert!(Failure::new(Service::Ec2, FailureKind::Timeout).maybe_done());
    }
}
