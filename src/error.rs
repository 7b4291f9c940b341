//! One error type for the whole run. Each variant knows its exit code and what the operator should do.

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
    /// 128 + SIGINT, as shells report it.
    Interrupted = 130,
    /// 128 + SIGTERM.
    Terminated = 143,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

pub const POLICY_HINT: &str = "grant ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions to the instance's role: \
     see packaging/iam-policy.json (installed as /usr/share/doc/imds-hop-limit/iam-policy.json); an SCP or a \
     permissions boundary that caps ec2:MetadataHttpPutResponseHopLimit can refuse it too";

#[derive(Debug, thiserror::Error)]
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

    #[error("could not read {what} from the instance metadata service: {detail}")]
    Metadata { what: &'static str, detail: String },

    #[error(
        "no IAM role is attached to this instance (IMDS has nothing under iam/security-credentials/): attach an \
         instance profile whose role allows ec2:DescribeInstances and ec2:ModifyInstanceMetadataOptions \
         (packaging/iam-policy.json), or give credentials through the environment"
    )]
    NoInstanceRole,

    #[error("no AWS credentials: {detail}")]
    NoCredentials { detail: String },

    #[error("not authorized to call ec2:{action} on {instance_id}: {POLICY_HINT}")]
    NotAuthorized { action: &'static str, instance_id: String },

    #[error("instance {instance_id} not found in {region}: {detail}")]
    InstanceNotFound { instance_id: String, region: String, detail: String },

    #[error(
        "gave up after {:.1} s waiting for EC2 to report the change applied on {instance_id} (last state: {last}); \
         raise --wait-timeout, or run `imds-hop-limit check` later",
        waited.as_secs_f64()
    )]
    WaitTimeout { instance_id: String, waited: Duration, last: String },

    #[error("ec2:{operation} failed: {detail}")]
    Ec2 { operation: &'static str, detail: String },

    #[error("{0}")]
    Unexpected(String),

    #[error("the run's deadline of {:.0} s passed while {stage}; raise --timeout", limit.as_secs_f64())]
    Deadline { stage: Stage, limit: Duration },

    #[error("interrupted by {signal} while {stage}")]
    Signal { signal: &'static str, stage: Stage },
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
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::MetadataUnreachable { .. }
            | Error::TokenSilent { .. }
            | Error::MetadataForbidden { .. }
            | Error::Metadata { .. } => ExitCode::MetadataUnreachable,
            Error::NoInstanceRole | Error::NoCredentials { .. } | Error::NotAuthorized { .. } => {
                ExitCode::NotAuthorized
            }
            Error::InstanceNotFound { .. } => ExitCode::InstanceNotFound,
            Error::WaitTimeout { .. } => ExitCode::WaitTimeout,
            Error::Ec2 { .. } | Error::Unexpected(_) => ExitCode::Unexpected,
            Error::Deadline { stage, .. } => match stage {
                Stage::Identity => ExitCode::MetadataUnreachable,
                Stage::Waiting => ExitCode::WaitTimeout,
                Stage::Ec2 => ExitCode::Unexpected,
            },
            Error::Signal { signal, .. } => {
                if *signal == "SIGTERM" {
                    ExitCode::Terminated
                } else {
                    ExitCode::Interrupted
                }
            }
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
            (ExitCode::Interrupted, 130),
            (ExitCode::Terminated, 143),
        ];
        for (code, n) in table {
            assert_eq!(code as u8, n, "{code:?}");
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
            (Error::NotAuthorized { action: "ModifyInstanceMetadataOptions", instance_id: "i-1".into() }, 5),
            (Error::InstanceNotFound { instance_id: "i-1".into(), region: "r".into(), detail: "d".into() }, 7),
            (
                Error::WaitTimeout {
                    instance_id: "i-1".into(),
                    waited: Duration::from_secs(1),
                    last: "pending".into(),
                },
                6,
            ),
            (Error::Ec2 { operation: "DescribeInstances", detail: "x".into() }, 1),
            (Error::Unexpected("x".into()), 1),
            (Error::Deadline { stage: Stage::Identity, limit: Duration::from_secs(1) }, 4),
            (Error::Deadline { stage: Stage::Waiting, limit: Duration::from_secs(1) }, 6),
            (Error::Signal { signal: "SIGTERM", stage: Stage::Ec2 }, 143),
            (Error::Signal { signal: "SIGINT", stage: Stage::Ec2 }, 130),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code() as u8, code, "{err}");
        }
    }

    #[test]
    fn not_authorized_names_the_action_and_the_policy() {
        let msg =
            Error::NotAuthorized { action: "ModifyInstanceMetadataOptions", instance_id: "i-1".into() }.to_string();
        assert!(msg.contains("ec2:ModifyInstanceMetadataOptions"), "{msg}");
        assert!(msg.contains("packaging/iam-policy.json"), "{msg}");
    }
}
