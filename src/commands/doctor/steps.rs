//! The steps, one function each, over the same identity, credentials, EC2 and planning code that apply runs.

use super::check::Check;
use super::surroundings::{Surroundings, hops_sentence};
use crate::config::Config;
use crate::ec2::Ec2;
use crate::error::Error;
use crate::imds::Probe;
use crate::plan::{self, Change, Decision, HttpTokens, Intent, Step};
use crate::reconcile::Target;
use crate::retry::Patient;
use crate::source::Source;
use std::time::{Duration, Instant, SystemTime};

/// doctor answers in seconds: EC2 throttling is retried (as apply does) only this long.
pub(super) const EC2_PATIENCE: Duration = Duration::from_secs(10);

/// Step 1. The metadata service: a TCP connection, then an IMDSv2 token (through the first read).
pub(super) async fn metadata_service<M: Probe>(imds: &M, around: &Surroundings) -> (Check, bool) {
    const STEP: &str = "metadata service";
    let started = Instant::now();
    if !imds.accepts_connections().await {
        let err = Error::MetadataUnreachable {
            endpoint: imds.endpoint().into(),
            detail: "no TCP connection within 1 s".into(),
        };
        let hint = "not on EC2, the instance's metadata endpoint is disabled (HttpEndpoint=disabled), or a firewall \
                    blocks it; fix it from outside with `imds-hop-limit --instance-id ID --region R`";
        return (Check::fail(STEP, &err, Some(hint.into())), false);
    }
    match imds.instance_id().await {
        Ok(_) => {
            let took = started.elapsed().as_millis();
            (Check::ok(STEP, format!("IMDSv2 token from {} in {took} ms", imds.endpoint())), true)
        }
        Err(err @ Error::TokenSilent { .. }) => {
            let hint = match &around.hops {
                Ok(hops) => format!(
                    "{}: raise the hop limit to {n} (`imds-hop-limit --hop-limit {n}` on the host)",
                    hops_sentence(hops.count()),
                    n = hops.count()
                ),
                Err(_) if !around.container_signs.is_empty() => {
                    "this container is one routed hop further from IMDS than the host: run `imds-hop-limit` on \
                     the host, or raise the hop limit to 2 (one more for each further bridge)"
                        .into()
                }
                Err(_) => "the token answer dies on the way: raise the hop limit by one for each routed hop \
                           between this process and the instance (`imds-hop-limit --hop-limit N` on the host)"
                    .into(),
            };
            (Check::fail(STEP, &err, Some(hint)), false)
        }
        Err(err) => (Check::fail(STEP, &err, None), false),
    }
}

/// Step 2. Where this runs, so that the advice fits.
pub(super) fn where_it_runs(around: &Surroundings) -> Check {
    if around.container_signs.is_empty() {
        Check::ok("where", "on the host (no container signs)")
    } else {
        Check::ok("where", format!("inside a container ({})", around.container_signs.join(", ")))
    }
}

/// Step 3. How many hops this process is from IMDS.
pub(super) fn hops_to_imds(around: &Surroundings) -> Check {
    match &around.hops {
        Ok(hops) => Check::ok("hops to IMDS", hops_sentence(hops.count())),
        Err(why) => Check::skip("hops to IMDS", &format!("not measured: {why}")),
    }
}

/// Step 4. What in the environment keeps SDKs from the instance role, though this agent is not fooled by it.
/// Step 3b. The TTL of the token answer as it reaches this process, and from it and the hop count the
/// instance's hop limit, with no IAM at all: IMDS sends the answer with TTL = hop limit, and each hop after
/// the first takes one off.
pub(super) fn token_ttl(around: &Surroundings) -> Check {
    const STEP: &str = "token answer TTL";
    match &around.token_ttl {
        Err(why) => Check::skip(STEP, &format!("not measured: {why}")),
        Ok(None) => Check::skip(STEP, "no token answer at any TTL (see the metadata service step)"),
        Ok(Some(m)) if m.ttl >= 64 || !m.enforced => Check::warn(
            STEP,
            format!("the token answer arrives even when only TTL {} or more is accepted", m.ttl),
            "something other than IMDS's hop limit sets its TTL (a proxy, a NAT to a metadata emulator), or the \
             kernel does not enforce IP_MINTTL here; the hop limit cannot be read from it",
        ),
        Ok(Some(m)) => {
            let hops = around.hops.as_ref().map(|h| h.count()).unwrap_or(1);
            let hop_limit = u16::from(m.ttl) + u16::from(hops) - 1;
            Check::ok(
                STEP,
                format!(
                    "the token answer reaches this process with TTL {}; {} from IMDS, so the instance's hop limit is \
                     {hop_limit} (read from IMDS itself, no IAM needed)",
                    m.ttl,
                    if hops == 1 { "1 hop".to_string() } else { format!("{hops} hops") }
                ),
            )
        }
    }
}

pub(super) fn environment(around: &Surroundings) -> Check {
    const STEP: &str = "environment";
    if around.metadata_disabled {
        return Check::warn(
            STEP,
            "AWS_EC2_METADATA_DISABLED=true: the AWS SDKs and CLI in this environment never ask IMDS, so they \
             never get the instance role's credentials",
            "unset AWS_EC2_METADATA_DISABLED where the application should use the instance role",
        );
    }
    if let Some(proxy) = &around.metadata_proxy {
        return Check::warn(
            STEP,
            format!(
                "a proxy ({proxy}) is set for the metadata address and NO_PROXY does not cover it: SDKs and curl \
                 in this environment send metadata requests through the proxy, which answers 403 or with its own \
                 metadata (imds-hop-limit itself never does)"
            ),
            "add 169.254.169.254 (and fd00:ec2::254) to NO_PROXY",
        );
    }
    Check::ok("environment", "no proxy for the metadata address; AWS_EC2_METADATA_DISABLED not set")
}

/// Step 5. Identity, through apply's own `identity` (flags first, then IMDS), briefly: the metadata step has
/// already said whether IMDS answers.
pub(super) async fn identity<M: Probe>(
    config: &Config,
    imds: &M,
    imds_ok: bool,
) -> Result<(Check, Option<Target>), Check> {
    const STEP: &str = "identity";
    let flags = config.instance_id.is_some() && config.region.is_some();
    if !imds_ok && !flags {
        return Err(Check::skip(STEP, "needs the metadata service, or --instance-id and --region"));
    }
    let brief = Config { imds_timeout: Duration::ZERO, ..config.clone() };
    match crate::agent::identity(imds, &brief, tokio::time::Instant::now() + EC2_PATIENCE).await {
        Ok(target) => {
            let zone = if imds_ok {
                imds.availability_zone().await.map(|z| format!(", zone {z}")).unwrap_or_default()
            } else {
                String::new()
            };
            Ok((Check::ok(STEP, format!("{} in {}{zone}", target.instance_id, target.region)), Some(target)))
        }
        Err(err) => Err(Check::fail(STEP, &err, Some("give --instance-id and --region".into()))),
    }
}

/// Step 6. The instance role and its credentials, with their expiry as IMDS gives it: the SDK extends
/// credentials served expired, so its own expiry cannot tell.
pub(super) async fn instance_role<M: Probe>(imds: &M) -> Check {
    const STEP: &str = "instance role";
    match imds.has_role().await {
        Ok(false) => Check::fail(
            STEP,
            &Error::NoInstanceRole,
            Some(
                "attach an instance profile: EC2 console, Actions, Security, Modify IAM role; or \
                 `aws ec2 associate-iam-instance-profile`"
                    .into(),
            ),
        ),
        Err(err) => Check::fail(STEP, &err, None),
        Ok(true) => {
            let expiration = imds.role_credentials_expiration().await.ok().flatten();
            match imds.role_credentials().await {
                Err(err) => Check::fail(STEP, &err, None),
                Ok(()) => match expiration {
                    Some(at) if at <= SystemTime::now() => {
                        Check::fail(STEP, &Error::credentials_expired(at, None), None)
                    }
                    _ => {
                        let until = expiration.map(expires_in).unwrap_or_else(|| "no expiry given".into());
                        Check::ok(STEP, format!("credentials obtainable, {until}"))
                    }
                },
            }
        }
    }
}

/// Steps 7 to 9. EC2: reachable and authorized (DescribeInstances; ModifyInstanceMetadataOptions with DryRun, sent
/// with what apply would send), then the options against what is wanted, planned as apply plans.
pub(super) async fn ec2_steps<E: Ec2>(
    config: &Config,
    around: &Surroundings,
    ec2: &Patient<'_, E>,
    target: &Target,
) -> Vec<Check> {
    let id = target.instance_id.as_str();
    let mut checks = Vec::new();
    let until = tokio::time::Instant::now() + EC2_PATIENCE;
    // A refusal's own message says what to do (the policy to grant, or whose policy refused): no hint under it.
    let (reported, source) = match ec2.describe_instance(id, until).await {
        Ok(described) => {
            checks.push(Check::ok("ec2:DescribeInstances", "authorized"));
            (described.options, described.source)
        }
        Err(err) => {
            checks.push(Check::fail("ec2:DescribeInstances", &err, None));
            checks.push(Check::skip("ec2:ModifyInstanceMetadataOptions", "needs DescribeInstances"));
            checks.push(Check::skip("metadata options", "needs DescribeInstances"));
            return checks;
        }
    };
    let current = target.known(&reported);
    let decision = plan::decide(&current, &config.wanted);
    // What apply would send; with nothing to change now, what apply sends when the hop limit is too low, the
    // wanted value, which the shipped policy allows (the current one may be above the policy's cap).
    let probe = match plan::step(decision, Intent::Apply { wait: false }) {
        Step::Send { change, .. } => change,
        _ => Change { hop_limit: Some(config.wanted.hop_limit), ..Change::default() },
    };
    checks.push(match ec2.modify(id, &probe, true, until).await {
        Ok(_) => Check::ok("ec2:ModifyInstanceMetadataOptions", "authorized (DryRun)"),
        Err(err) => Check::fail("ec2:ModifyInstanceMetadataOptions", &err, None),
    });
    checks.push(options(around, &current, decision, &source, config.wanted.hop_limit));
    checks
}

pub(super) fn options(
    around: &Surroundings,
    current: &plan::MetadataOptions,
    decision: Decision,
    source: &Source,
    wanted: plan::HopLimit,
) -> Check {
    const STEP: &str = "metadata options";
    let tradeoff = "a hop limit above 1 lets containers use the instance role; HttpTokens=required is its safe \
                    companion (`--http-tokens required`)";
    // Measured farther from IMDS than the instance's hop limit reaches: that is the answer, whatever else.
    let needed = around.hops.as_ref().ok().map(|h| h.count());
    if let (Some(needed), Some(have)) = (needed, current.hop_limit) {
        if have.get() < needed {
            return Check::warn(
                STEP,
                format!("hop limit {have}, but {}", hops_sentence(needed)),
                format!("run `imds-hop-limit --hop-limit {needed}` on the host; {tradeoff}"),
            );
        }
    }
    match decision {
        Decision::InEffect => {
            if current.http_tokens == Some(HttpTokens::Required) {
                Check { hint: Some(tradeoff.into()), ..Check::ok(STEP, summary(current)) }
            } else {
                Check::warn(STEP, format!("compliant: {}; IMDSv1 still allowed", summary(current)), tradeoff)
            }
        }
        Decision::Pending => Check::warn(
            STEP,
            format!("{}: a change is still pending", summary(current)),
            "wait, or run `imds-hop-limit`",
        ),
        Decision::Change(change) => Check::warn(
            STEP,
            format!("not compliant: `imds-hop-limit` would set {}", current.changes_to(&change.applied_to(current))),
            format!("run `imds-hop-limit` on the host; {tradeoff}. {}", where_from(source, current, wanted)),
        ),
    }
}

/// Where a non-compliant instance came from (its tags), and that the next one from there will be the same
/// unless the source is fixed, with the fix.
pub(super) fn where_from(source: &Source, current: &plan::MetadataOptions, wanted: plan::HopLimit) -> String {
    let hop = plan::show(current.hop_limit, plan::Absent::Unknown);
    match source.kind {
        Some(_) => format!(
            "This instance came from {}: the next instance from there will likely have hop limit {hop} too, unless \
             the source is fixed: {}",
            source.label(),
            source.fix(wanted)
        ),
        None => format!("Its tags do not say where it came from: {}", source.fix(wanted)),
    }
}

pub(super) fn summary(o: &plan::MetadataOptions) -> String {
    o.describe(&[plan::Field::HopLimit, plan::Field::Endpoint, plan::Field::HttpTokens], plan::Absent::Unknown)
}

pub(super) fn expires_in(at: SystemTime) -> String {
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("expire in {} min", left.as_secs() / 60),
        Err(_) => "already expired".into(),
    }
}
