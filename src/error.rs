//! One error type for the whole run. Each variant knows its exit code and what the operator should do.
//! Remote text reaches a variant only through `remote::sanitize` or as a parsed code or status.

use crate::wait::Backoff;
use std::fmt;
use std::time::Duration;

/// The process exit codes, documented in README.md and each locked by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Compliant: already, or changed and verified (or accepted, with `--no-wait`).
    Compliant = 0,
    Unexpected = 1,
    Usage = 2,
    /// `check` or `--dry-run` found a change to make.
    NotCompliant = 3,
    MetadataUnreachable = 4,
    NotAuthorized = 5,
    WaitTimeout = 6,
    InstanceNotFound = 7,
    /// EC2 throttled this account's requests (or kept failing) until the deadline, before any change.
    Throttled = 8,
    /// `defaults`: an AWS Organizations declarative policy manages the account's metadata defaults, so
    /// nothing was changed.
    ManagedElsewhere = 9,
    /// `--organization`: the organization's accounts could not be listed (the account is in no organization,
    /// or the credentials may not call organizations:ListAccounts there).
    Organization = 10,
    /// 128 + SIGINT, as shells report it.
    Interrupted = 130,
    /// 128 + SIGTERM.
    Terminated = 143,
}

impl ExitCode {
    /// Failures from most to least severe, for merging many outcomes into one code: a refusal (credentials,
    /// authorization) blocks everything and needs the operator first; an unexpected failure next; then EC2's
    /// throttling (run again later), a change not yet applied, an instance not found, the rest.
    const SEVERITY: [ExitCode; 9] = [
        ExitCode::Organization,
        ExitCode::NotAuthorized,
        ExitCode::Unexpected,
        ExitCode::Throttled,
        ExitCode::WaitTimeout,
        ExitCode::InstanceNotFound,
        ExitCode::ManagedElsewhere,
        ExitCode::MetadataUnreachable,
        ExitCode::Usage,
    ];

    /// Many outcomes as one exit code: the most severe failure if any; else 3 if anything is (or would be)
    /// left to change; else 0. Signals end a run before there is anything to merge.
    pub fn merge(codes: impl IntoIterator<Item = ExitCode>) -> ExitCode {
        let mut worst = ExitCode::Compliant;
        let rank = |c: ExitCode| match c {
            ExitCode::Compliant => 0,
            ExitCode::NotCompliant => 1,
            other => 2 + Self::SEVERITY.iter().rev().position(|s| *s == other).unwrap_or(Self::SEVERITY.len()),
        };
        for code in codes {
            if rank(code) > rank(worst) {
                worst = code;
            }
        }
        worst
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// The fleet and defaults commands' policy.
pub const FLEET_POLICY_HINT: &str = "grant what packaging/iam-fleet-policy.json grants (ec2:DescribeInstances, \
     ec2:DescribeRegions, ec2:ModifyInstanceMetadataOptions, ec2:GetInstanceMetadataDefaults, \
     ec2:ModifyInstanceMetadataDefaults) to the credentials this command runs with; an SCP or a permissions \
     boundary can refuse it too";

pub const POLICY_HINT: &str = "grant ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions to the instance's role: \
     see packaging/iam-policy.json (installed as /usr/share/doc/imds-hop-limit/iam-policy.json); an SCP or a \
     permissions boundary that caps ec2:MetadataHttpPutResponseHopLimit can refuse it too";

/// What went wrong with one EC2 call, as far as it is safe and useful to show: the kind, the HTTP status,
/// EC2's error code and message (sanitized) and the request id. Never a body or a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// EC2 answered that the account is over its request budget (RequestLimitExceeded, HTTP 429, ...).
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
    /// An answer that is not an EC2 answer (HTML, truncated XML, ...).
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
    pub fn new(kind: FailureKind) -> Self {
        Failure { kind, status: None, code: None, message: None, request_id: None }
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

    /// Whether EC2 may have carried out the call although its answer was a failure: a timeout, a broken
    /// connection or a 5xx after the request was sent. A throttled call was not carried out.
    pub fn maybe_done(&self) -> bool {
        matches!(self.kind, FailureKind::ServerError | FailureKind::Timeout | FailureKind::Connect | FailureKind::Cut)
    }

    /// What kept failing, in words for a message that ends a run: throttling is the account's shared budget;
    /// the others are the way to EC2 or EC2 itself.
    fn kept(&self) -> &'static str {
        match self.kind {
            FailureKind::Throttled => "throttling this account's requests",
            FailureKind::Connect => "refusing or dropping the connection (no connection to EC2)",
            FailureKind::Timeout => "not answering in time",
            FailureKind::Proxy => "failing at the proxy",
            FailureKind::Cut => "cutting its answers off",
            FailureKind::Skewed => "refusing this clock's time",
            _ => "failing",
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
            FailureKind::Malformed => "an answer that is not an EC2 answer",
            FailureKind::Cut => "the answer was cut off",
            FailureKind::Skewed => "the request's time was refused",
            FailureKind::Refused => "refused",
            FailureKind::Local => "failed before sending",
        };
        f.write_str(what)?;
        if let Some(status) = self.status {
            write!(f, ", HTTP {status}")?;
        }
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    #[error("cannot reach the instance metadata service at {endpoint}: {detail}")]
    MetadataUnreachable { endpoint: String, detail: String },

    #[error(
        "no IMDSv2 token answer from {endpoint}: the connection opened but the answer never came. This is the \
         hop-limit symptom itself: this process is more hops from IMDS than the instance's hop limit allows \
         (typically a container behind a hop limit of 1). Run imds-hop-limit on the host, not in the container"
    )]
    TokenSilent { endpoint: String },

    #[error("the instance metadata service at {endpoint} refused the token request: {detail}")]
    MetadataForbidden { endpoint: String, detail: String },

    /// IMDS answered 429 (throttled) or 5xx: retried with backoff inside the identity bound.
    #[error("the instance metadata service at {endpoint} kept answering HTTP {status} (throttled or failing)")]
    MetadataBusy { endpoint: String, status: u16 },

    #[error("could not read {what} from the instance metadata service: {detail}")]
    Metadata { what: &'static str, detail: String },

    /// IMDS answered, but not with a value of the right shape: a captive portal, a proxy, a fake.
    #[error(
        "the instance metadata service answered something that is not {what}: {value:?}; a proxy or captive \
         portal may be answering for 169.254.169.254 (give --instance-id and --region to go on without IMDS)"
    )]
    MetadataInvalid { what: &'static str, value: String },

    #[error(
        "no IAM role is attached to this instance (IMDS has nothing under iam/security-credentials/): attach an \
         instance profile whose role allows ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions \
         (packaging/iam-policy.json), or give credentials through the environment"
    )]
    NoInstanceRole,

    #[error("no AWS credentials: {detail}")]
    NoCredentials { detail: String },

    #[error(
        "the instance role's credentials from IMDS expired at {expired} and IMDS has not renewed them: EC2 \
         refused them ({failure}). IMDS renews them well before they expire, so this clock or the instance's \
         credential service is wrong: check the clock (`chronyc tracking`, `timedatectl`), then try again"
    )]
    CredentialsExpired { expired: String, failure: Failure },

    #[error(
        "EC2 refused the request's time ({failure}): this machine's clock is off by more than EC2 allows \
         (5 minutes); check the clock (`chronyc tracking`, `timedatectl`), not the credentials"
    )]
    ClockSkew { failure: Failure },

    #[error(
        "not authorized to call ec2:{action} on {instance_id}: {}{}",
        Refusal::advice(refusal.as_ref(), action, hint),
        decode_hint(.encoded)
    )]
    NotAuthorized {
        action: &'static str,
        instance_id: String,
        encoded: Option<String>,
        /// The kind of policy that refused, where EC2's message names it.
        refusal: Option<Refusal>,
        /// What to grant, and to whom, when no policy allows the action (or EC2 did not say which refused).
        hint: &'static str,
    },

    #[error(
        "the instance metadata defaults of {region} are managed by {managed_by}{}: changed nothing. Change them \
         where they are managed (AWS Organizations, declarative policies for EC2)",
        .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
    )]
    ManagedElsewhere { region: String, managed_by: String, message: Option<String> },

    #[error("instance {instance_id} not found in {region}: {detail}")]
    InstanceNotFound { instance_id: String, region: String, detail: String },

    /// The instance was terminated (or is shutting down) while its change waited to be applied.
    #[error("instance {instance_id} is {state}: its metadata options no longer matter, and nothing is left to verify")]
    InstanceGone { instance_id: String, state: crate::plan::InstanceState },

    /// EC2 accepted the change, then refused every read that would verify it.
    #[error("EC2 accepted the change on {instance_id}, but it could not be read back to verify it: {cause}")]
    NotVerified { instance_id: String, cause: Box<Error> },

    #[error(
        "gave up after {:.1} s waiting for EC2 to report the change applied on {instance_id} (last answer: \
         {last}); raise {bound}, or run `imds-hop-limit check` later",
        waited.as_secs_f64()
    )]
    WaitTimeout { instance_id: String, waited: Duration, last: String, bound: &'static str },

    #[error("ec2:{operation} failed: {failure}")]
    Ec2 { operation: &'static str, failure: Failure },

    #[error(
        "EC2 kept {} for {:.0} s, until {}: ec2:{operation}: {last}; {}",
        last.kept(),
        waited.as_secs_f64(),
        deadline(limit),
        if last.kind == FailureKind::Throttled {
            "this is not any instance's fault: EC2's request budget is shared by the whole account and region. \
             Run it again later, or raise --timeout"
        } else {
            "check the way to EC2 (the endpoint, a proxy, the network), then run it again"
        }
    )]
    GaveUp {
        operation: &'static str,
        waited: Duration,
        last: Box<Failure>,
        /// `--timeout`, where the run's deadline was the bound (for the message).
        limit: Option<Duration>,
    },

    /// A paced call whose turn would have come only after its deadline: never sent.
    #[error(
        "ec2:{operation} was not sent: {}",
        if *throttled {
            format!(
                "EC2 was throttling this account's requests, and at the pace left ({rate:.2} calls a second) its \
                 turn would have come after {}. This is not any instance's fault: EC2's request budget is shared by \
                 the whole account and region. Run it again later, or raise --timeout",
                deadline(limit)
            )
        } else {
            format!(
                "at EC2's pace for it ({rate:.2} calls a second) its turn would have come after {}: raise --timeout \
                 (or --modify-rate, where AWS raised this account's limit)",
                deadline(limit)
            )
        }
    )]
    NotSent {
        operation: &'static str,
        rate: f64,
        throttled: bool,
        /// `--timeout`, where the run's deadline was the bound (for the message).
        limit: Option<Duration>,
    },

    /// An STS or Organizations call that failed (the accounts side of the org-wide commands).
    #[error("{operation} failed: {failure}")]
    Aws { operation: &'static str, failure: Failure },

    /// `--organization`: the accounts cannot be listed.
    #[error("{0}")]
    Organization(String),

    /// A member account's role could not be assumed: that account's failure, the others go on.
    #[error("could not assume {role_arn}: {failure}{}", assume_advice(failure))]
    AssumeRole { role_arn: String, failure: Failure },

    #[error("{0}")]
    Unexpected(String),

    #[error("the run's deadline (--timeout {}) passed while {stage}; raise --timeout", crate::cli::show_duration(*limit))]
    Deadline { stage: Stage, limit: Duration },

    #[error("interrupted by {signal} while {stage}")]
    Signal { signal: Signal, stage: Stage },
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
    fn advice(refusal: Option<&Refusal>, action: &str, hint: &str) -> String {
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

/// The bound a call ran into: the run's `--timeout` as given, where that was it.
fn deadline(limit: &Option<Duration>) -> String {
    match limit {
        Some(limit) => format!("the run's deadline (--timeout {})", crate::cli::show_duration(*limit)),
        None => "the deadline".into(),
    }
}

impl Error {
    /// The same error, naming `--timeout` as given where the run's deadline was the bound a call ran into.
    pub fn at_deadline(self, timeout: Option<Duration>) -> Error {
        match self {
            Error::GaveUp { operation, waited, last, limit: None } => {
                Error::GaveUp { operation, waited, last, limit: timeout }
            }
            Error::NotSent { operation, rate, throttled, limit: None } => {
                Error::NotSent { operation, rate, throttled, limit: timeout }
            }
            other => other,
        }
    }
}

fn decode_hint(encoded: &Option<String>) -> String {
    match encoded {
        Some(message) => format!(
            ". EC2's encoded authorization message says which statement refused it; decode it with \
             `aws sts decode-authorization-message --encoded-message {message}` (needs \
             sts:DecodeAuthorizationMessage)"
        ),
        None => String::new(),
    }
}

/// The signals that end a run: SIGTERM (systemd, a kubelet, `docker stop`) and SIGINT (Ctrl-C).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        })
    }
}

/// Where a run was when a deadline or signal ended it, for the message and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Identity,
    Ec2,
    Waiting,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Identity => "reading the instance identity",
            Stage::Ec2 => "calling EC2",
            Stage::Waiting => "waiting for the change to be applied",
        })
    }
}

impl Error {
    /// The role's credentials expired at `at` (as IMDS gave it); `failure` is what EC2 answered to them, if
    /// it was asked.
    pub fn credentials_expired(at: std::time::SystemTime, failure: Option<Failure>) -> Error {
        let expired = aws_smithy_types::DateTime::from(at)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_else(|_| "an earlier time".into());
        Error::CredentialsExpired { expired, failure: failure.unwrap_or_else(|| Failure::new(FailureKind::Refused)) }
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::MetadataUnreachable { .. }
            | Error::TokenSilent { .. }
            | Error::MetadataForbidden { .. }
            | Error::MetadataBusy { .. }
            | Error::Metadata { .. }
            | Error::MetadataInvalid { .. } => ExitCode::MetadataUnreachable,
            Error::NoInstanceRole
            | Error::NoCredentials { .. }
            | Error::CredentialsExpired { .. }
            | Error::ClockSkew { .. }
            | Error::NotAuthorized { .. } => ExitCode::NotAuthorized,
            Error::InstanceNotFound { .. } | Error::InstanceGone { .. } => ExitCode::InstanceNotFound,
            Error::NotVerified { cause, .. } => cause.exit_code(),
            Error::ManagedElsewhere { .. } => ExitCode::ManagedElsewhere,
            Error::WaitTimeout { .. } => ExitCode::WaitTimeout,
            Error::GaveUp { .. } | Error::NotSent { .. } => ExitCode::Throttled,
            Error::Ec2 { .. } | Error::Unexpected(_) => ExitCode::Unexpected,
            Error::Organization(_) => ExitCode::Organization,
            Error::Aws { failure, .. } | Error::AssumeRole { failure, .. } => match failure.kind {
                FailureKind::Throttled => ExitCode::Throttled,
                _ if failure.denied() => ExitCode::NotAuthorized,
                _ => ExitCode::Unexpected,
            },
            Error::Deadline { stage, .. } => match stage {
                Stage::Identity => ExitCode::MetadataUnreachable,
                Stage::Waiting => ExitCode::WaitTimeout,
                Stage::Ec2 => ExitCode::Throttled,
            },
            Error::Signal { signal: Signal::Term, .. } => ExitCode::Terminated,
            Error::Signal { signal: Signal::Int, .. } => ExitCode::Interrupted,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about a role that could not be assumed, by what STS answered.
fn assume_advice(failure: &Failure) -> &'static str {
    match failure.code.as_deref() {
        Some("AccessDenied") => {
            ". The role must exist in that account and trust these credentials' account (and, with --external-id, \
             that id), and these credentials need sts:AssumeRole on it; a service or resource control policy may \
             refuse it, and a suspended or closed account refuses every role (packaging/org/ has the member role \
             and the caller's policy)"
        }
        Some("RegionDisabledException") => {
            ": STS is not activated in this region for that account; run from a region where it is (us-east-1 \
             always is)"
        }
        _ => "",
    }
}

/// An error and its sources, outermost first.
pub fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e: &&'a (dyn std::error::Error + 'static)| (*e).source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_numbers() {
        let table = [
            (ExitCode::Compliant, 0),
            (ExitCode::Unexpected, 1),
            (ExitCode::Usage, 2),
            (ExitCode::NotCompliant, 3),
            (ExitCode::MetadataUnreachable, 4),
            (ExitCode::NotAuthorized, 5),
            (ExitCode::WaitTimeout, 6),
            (ExitCode::InstanceNotFound, 7),
            (ExitCode::Throttled, 8),
            (ExitCode::ManagedElsewhere, 9),
            (ExitCode::Interrupted, 130),
            (ExitCode::Terminated, 143),
        ];
        for (code, n) in table {
            assert_eq!(code as u8, n, "{code:?}");
        }
    }

    #[test]
    fn merging_takes_the_most_severe_failure_then_not_compliant_then_compliant() {
        use ExitCode::*;
        assert_eq!(ExitCode::merge([]), Compliant);
        assert_eq!(ExitCode::merge([Compliant, Compliant]), Compliant);
        assert_eq!(ExitCode::merge([Compliant, NotCompliant, Compliant]), NotCompliant);
        assert_eq!(ExitCode::merge([NotCompliant, InstanceNotFound]), InstanceNotFound, "a failure beats 3");
        assert_eq!(ExitCode::merge([WaitTimeout, Throttled, InstanceNotFound]), Throttled);
        assert_eq!(ExitCode::merge([Throttled, Unexpected]), Unexpected);
        assert_eq!(ExitCode::merge([Unexpected, NotAuthorized, Compliant]), NotAuthorized);
        // Order does not matter.
        let all = [Compliant, NotCompliant, WaitTimeout, InstanceNotFound, Throttled, NotAuthorized, Unexpected];
        for rotation in 0..all.len() {
            let mut codes = all.to_vec();
            codes.rotate_left(rotation);
            assert_eq!(ExitCode::merge(codes), NotAuthorized);
        }
    }

    #[test]
    fn each_error_maps_to_its_code() {
        let ep = || "http://169.254.169.254".to_string();
        let cases = [
            (Error::Usage("x".into()), 2),
            (Error::MetadataUnreachable { endpoint: ep(), detail: "refused".into() }, 4),
            (Error::TokenSilent { endpoint: ep() }, 4),
            (Error::NoInstanceRole, 5),
            (
                Error::NotAuthorized {
                    action: "ModifyInstanceMetadataOptions",
                    instance_id: "i-1".into(),
                    encoded: None,
                    refusal: None,
                    hint: POLICY_HINT,
                },
                5,
            ),
            (Error::MetadataInvalid { what: "a region", value: "<html>".into() }, 4),
            (Error::ClockSkew { failure: Failure::new(FailureKind::Refused) }, 5),
            (Error::CredentialsExpired { expired: "x".into(), failure: Failure::new(FailureKind::Refused) }, 5),
            (
                Error::GaveUp {
                    operation: "DescribeInstances",
                    waited: Duration::from_secs(1),
                    last: Box::new(Failure::new(FailureKind::Throttled)),
                    limit: None,
                },
                8,
            ),
            (Error::InstanceNotFound { instance_id: "i-1".into(), region: "r".into(), detail: "d".into() }, 7),
            (
                Error::WaitTimeout {
                    instance_id: "i-1".into(),
                    waited: Duration::from_secs(1),
                    last: "pending".into(),
                    bound: "--wait-timeout",
                },
                6,
            ),
            (Error::Ec2 { operation: "DescribeInstances", failure: Failure::new(FailureKind::Malformed) }, 1),
            (Error::Unexpected("x".into()), 1),
            (Error::Deadline { stage: Stage::Identity, limit: Duration::from_secs(1) }, 4),
            (Error::Deadline { stage: Stage::Waiting, limit: Duration::from_secs(1) }, 6),
            (Error::Deadline { stage: Stage::Ec2, limit: Duration::from_secs(1) }, 8),
            (Error::Signal { signal: Signal::Term, stage: Stage::Ec2 }, 143),
            (Error::Signal { signal: Signal::Int, stage: Stage::Ec2 }, 130),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code() as u8, code, "{err}");
        }
    }

    #[test]
    fn not_authorized_names_the_action_and_the_policy() {
        let msg = Error::NotAuthorized {
            action: "ModifyInstanceMetadataOptions",
            instance_id: "i-1".into(),
            encoded: Some("AbC-123_x".into()),
            refusal: None,
            hint: POLICY_HINT,
        }
        .to_string();
        assert!(msg.contains("ec2:ModifyInstanceMetadataOptions"), "{msg}");
        assert!(msg.contains("packaging/iam-policy.json"), "{msg}");
        assert!(msg.contains("aws sts decode-authorization-message --encoded-message AbC-123_x"), "{msg}");
    }

    /// Each kind of policy EC2's message names is recognised by its fixed phrase, explicit or not, and its
    /// advice names whose it is to change; the ARNs around the phrase are never part of it.
    #[test]
    fn the_policy_that_refused_is_named_with_its_owner() {
        let message = |why: &str| {
            format!(
                "You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/r/i-1 \
                 is not authorized to perform: ec2:ModifyInstanceMetadataOptions on resource: \
                 arn:aws:ec2:us-west-2:123456789012:instance/i-1 {why}. Encoded authorization failure message: x"
            )
        };
        let cases = [
            (
                "with an explicit deny in a service control policy",
                PolicyKind::ServiceControl,
                true,
                "organization's administrators",
            ),
            (
                "because no service control policy allows the ec2:X action",
                PolicyKind::ServiceControl,
                false,
                "organization's administrators",
            ),
            (
                "with an explicit deny in a resource control policy",
                PolicyKind::ResourceControl,
                true,
                "organization's administrators",
            ),
            ("with an explicit deny in a permissions boundary", PolicyKind::PermissionsBoundary, true, "role owner's"),
            (
                "because no permissions boundary allows the ec2:X action",
                PolicyKind::PermissionsBoundary,
                false,
                "role owner's",
            ),
            (
                "with an explicit deny in an identity-based policy",
                PolicyKind::IdentityBased,
                true,
                "remove or narrow that Deny",
            ),
            (
                "because no identity-based policy allows the ec2:X action",
                PolicyKind::IdentityBased,
                false,
                "packaging/iam-policy.json",
            ),
            ("with an explicit deny in a session policy", PolicyKind::Session, true, "session policy"),
            ("because no session policy allows the ec2:X action", PolicyKind::Session, false, "session policy"),
            ("with an explicit deny in a VPC endpoint policy", PolicyKind::VpcEndpoint, true, "VPC endpoint"),
        ];
        for (why, policy, explicit, advice) in cases {
            let refusal = Refusal::parse(&message(why));
            assert_eq!(refusal, Some(Refusal { policy, explicit }), "{why}");
            let text = Error::NotAuthorized {
                action: "ModifyInstanceMetadataOptions",
                instance_id: "i-1".into(),
                encoded: None,
                refusal,
                hint: POLICY_HINT,
            }
            .to_string();
            assert!(text.contains(advice), "{why}: {text}");
            assert!(!text.contains("arn:aws"), "no ARN is echoed: {text}");
        }
        assert_eq!(Refusal::parse("You are not authorized to perform this operation."), None);
        // Read within its bound only: a phrase past 2 KiB (or in the encoded part) is not looked for.
        let far = format!("{}with an explicit deny in a service control policy", "é".repeat(2000));
        assert_eq!(Refusal::parse(&far), None);
    }

    #[test]
    fn a_failure_shows_status_code_message_and_request_id_only() {
        let f = Failure {
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
        assert!(Failure::new(FailureKind::Tls).retry().is_none(), "a certificate error cannot heal");
        assert!(Failure::new(FailureKind::Timeout).maybe_done());
    }
}
