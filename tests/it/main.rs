//! Every integration test lives in this one binary: each extra test binary links aws-sdk-ec2 again.

#[path = "../simulator/mod.rs"]
mod simulator;

mod support;
mod watch;

mod agent;
mod channels;
mod deploy;
mod doctor;
mod fleet;
mod hardening;
mod hop;
mod hostile;
mod image;
mod layout;
mod moto;
mod org;
mod sensing;
mod ssm;
mod storm;
mod templates;
