//! One error type for the whole run. Each variant knows its exit code and what the operator should do.
//! Remote text reaches a variant only through `remote::sanitize` or as a parsed code or status.

use crate::ec2::failures::{Failure, FailureKind, Refusal, Service};
use crate::exit::ExitCode;
use crate::process::signal::{Signal, Stage};
use std::time::Duration;

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
        "{} refused the request's time ({failure}): this machine's clock is off by more than AWS allows \
         (5 minutes); check the clock (`chronyc tracking`, `timedatectl`), not the credentials",
        failure.service
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

    /// A call to an AWS service (EC2, STS, Organizations) that failed, classified (`ec2::failure`).
    #[error("{}:{operation} failed: {failure}", failure.service.prefix())]
    Call { operation: &'static str, failure: Failure },

    #[error(
        "{} kept {} for {:.0} s, until {}: {}:{operation}: {last}; {}",
        last.service,
        last.kept(),
        waited.as_secs_f64(),
        deadline(limit),
        last.service.prefix(),
        if last.kind == FailureKind::Throttled {
            format!(
                "this is not any instance's fault: {}. Run it again later, or raise --timeout",
                last.service.budget()
            )
        } else {
            format!("check the way to {} (the endpoint, a proxy, the network), then run it again", last.service)
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

    /// `--organization`: the accounts cannot be listed.
    #[error("{0}")]
    Organization(String),

    /// A member account's role could not be assumed: that account's failure, the others go on.
    #[error("could not assume {role_arn}: {failure}{}", assume_advice(failure))]
    AssumeRole { role_arn: String, failure: Failure },

    #[error("{0}")]
    Unexpected(String),

    #[error("the run's deadline (--timeout {}) passed while {stage}; raise --timeout", crate::duration::show_duration(*limit))]
    Deadline { stage: Stage, limit: Duration },

    #[error("interrupted by {signal} while {stage}")]
    Signal { signal: Signal, stage: Stage },
}

/// The bound a call ran into: the run's `--timeout` as given, where that was it.
fn deadline(limit: &Option<Duration>) -> String {
    match limit {
        Some(limit) => format!("the run's deadline (--timeout {})", crate::duration::show_duration(*limit)),
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

impl Error {
    /// The role's credentials expired at `at` (as IMDS gave it); `failure` is what EC2 answered to them, if
    /// it was asked.
    pub fn credentials_expired(at: std::time::SystemTime, failure: Option<Failure>) -> Error {
        let expired = aws_smithy_types::DateTime::from(at)
            .fmt(aws_smithy_types::date_time::Format::DateTime)
            .unwrap_or_else(|_| "an earlier time".into());
        Error::CredentialsExpired {
            expired,
            failure: failure.unwrap_or_else(|| Failure::new(Service::Ec2, FailureKind::Refused)),
        }
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
            Error::Unexpected(_) => ExitCode::Unexpected,
            Error::Organization(_) => ExitCode::Organization,
            Error::Call { failure, .. } | Error::AssumeRole { failure, .. } => match failure.kind {
                FailureKind::Throttled => ExitCode::Throttled,
                _ if failure.refusal() => ExitCode::NotAuthorized,
                _ => ExitCode::Unexpected,
            },
            Error::Deadline { stage, .. } => match stage {
                Stage::Identity => ExitCode::MetadataUnreachable,
                Stage::Waiting => ExitCode::WaitTimeout,
                Stage::Ec2 | Stage::Accounts => ExitCode::Throttled,
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
    use crate::ec2::failures::{POLICY_HINT, PolicyKind};

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
            (Error::ClockSkew { failure: Failure::new(Service::Ec2, FailureKind::Refused) }, 5),
            (
                Error::CredentialsExpired {
                    expired: "x".into(),
                    failure: Failure::new(Service::Ec2, FailureKind::Refused),
                },
                5,
            ),
            (
                Error::GaveUp {
                    operation: "DescribeInstances",
                    waited: Duration::from_secs(1),
                    last: Box::new(Failure::new(Service::Ec2, FailureKind::Throttled)),
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
            (
                Error::Call {
                    operation: "DescribeInstances",
                    failure: Failure::new(Service::Ec2, FailureKind::Malformed),
                },
                1,
            ),
            (Error::Organization("x".into()), 10),
            (Error::ManagedElsewhere { region: "r".into(), managed_by: "p".into(), message: None }, 9),
            (
                Error::Call {
                    operation: "ListAccounts",
                    failure: Failure::new(Service::Organizations, FailureKind::Throttled),
                },
                8,
            ),
            (
                Error::AssumeRole {
                    role_arn: "arn:aws:iam::111111111111:role/r".into(),
                    failure: Failure {
                        code: Some("RegionDisabledException".into()),
                        ..Failure::new(Service::Sts, FailureKind::Refused)
                    },
                },
                5,
            ),
            (
                Error::AssumeRole {
                    role_arn: "arn:aws:iam::111111111111:role/r".into(),
                    failure: Failure {
                        code: Some("AccessDenied".into()),
                        ..Failure::new(Service::Sts, FailureKind::Refused)
                    },
                },
                5,
            ),
            (Error::Unexpected("x".into()), 1),
            (Error::Deadline { stage: Stage::Identity, limit: Duration::from_secs(1) }, 4),
            (Error::Deadline { stage: Stage::Waiting, limit: Duration::from_secs(1) }, 6),
            (Error::Deadline { stage: Stage::Ec2, limit: Duration::from_secs(1) }, 8),
            (Error::Deadline { stage: Stage::Accounts, limit: Duration::from_secs(1) }, 8),
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
}
