//! Where a run is, and what ended it: the signals that end runs, and the stage a run was at (for the message
//! and the exit code of a deadline or a signal).

use std::fmt;

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
    /// An org-wide run: its accounts entered (STS), listed (Organizations) and worked in (EC2) side by side.
    Accounts,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Identity => "reading the instance identity",
            Stage::Ec2 => "calling EC2",
            Stage::Waiting => "waiting for the change to be applied",
            Stage::Accounts => "calling AWS (STS, Organizations, EC2) in the accounts",
        })
    }
}
