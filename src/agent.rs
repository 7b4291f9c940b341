//! One pass of the agent over one instance, shared by `apply`/`check` (one pass) and `watch` (one every
//! interval): sense the hop limit from IMDS itself where it can be proven (no EC2 call when compliant),
//! otherwise EC2's read, decide, change and verify (`reconcile`). Where a credentials failure ends it, the
//! instance's own terms say why.

use crate::cli::EvidenceSource;
use crate::config::Config;
use crate::ec2::Ec2Api;
use crate::error::{Error, Result};
use crate::imds::{Imds, Metadata, Probe};
use crate::plan::MetadataOptions;
use crate::process::Progress;
use crate::reconcile::{self, Action, Report};
use crate::sense::{self, Evidence};
use tokio::time::Instant;

/// The agent's run on this instance (or `--instance-id`): sensing first, then the identity, then one look.
pub async fn once(config: &Config, progress: &Progress, deadline: Instant) -> Result<Report> {
    // Sense first: a compliant instance proven by IMDS needs nothing else, its identity read with the probe's
    // token over the same raw connections, with no HTTP client, credentials or EC2.
    let sensed = sense_first(config).await;
    if let (Some(Evidence::Proven(s, token)), Some(addr)) = (&sensed, sense::address(&config.imds_endpoint)) {
        if sense::compliant(s, &config.wanted) {
            if let Some((instance_id, region)) = sense::identity(addr, token).await {
                let region = config.region.clone().unwrap_or(region);
                progress.identified(&instance_id, &region);
                return Ok(compliant_by_imds(reconcile::Target::named(instance_id, region), s));
            }
        }
    }
    let imds = Imds::new(&config.imds_endpoint)?;
    let target = reconcile::identity(&imds, config, deadline).await?;
    tracing::debug!(?target, "identity");
    progress.identified(&target.instance_id, &target.region);
    // Nothing answered the probes (IMDS not up yet at boot) but the identity's retries found it: sense again.
    let sensed = match sensed {
        Some(e) if sense::unreachable(&e) => sense_first(config).await,
        other => other,
    };
    look(config, &imds, target, sensed, progress, deadline).await
}

fn compliant_by_imds(target: reconcile::Target, sensed: &sense::Sensed) -> Report {
    Report {
        instance_id: target.instance_id,
        region: target.region,
        before: MetadataOptions::default(),
        after: MetadataOptions::default(),
        action: Action::Unchanged,
        verified: true,
        evidence: EvidenceSource::Imds,
        sensed: Some(sensed.clone()),
    }
}

/// One look at an instance whose identity is known: sense, and where that cannot prove compliance, EC2's
/// read, decide, change and verify. The agent makes one; `watch` one every interval.
pub async fn pass(
    config: &Config,
    imds: &Imds,
    target: reconcile::Target,
    progress: &Progress,
    deadline: Instant,
) -> Result<Report> {
    let sensed = sense_first(config).await;
    look(config, imds, target, sensed, progress, deadline).await
}

/// The rest of a pass once sensing has spoken: compliant by IMDS, or EC2's read, decision, change and check.
async fn look(
    config: &Config,
    imds: &Imds,
    target: reconcile::Target,
    sensed: Option<Evidence>,
    progress: &Progress,
    deadline: Instant,
) -> Result<Report> {
    if let Some(Evidence::Proven(s, _)) = &sensed {
        if sense::compliant(s, &config.wanted) {
            return Ok(compliant_by_imds(target, s));
        }
    }
    // Where the kernel showed it enforces the minimum TTL on the way to IMDS, a change is verified there.
    let data_plane = match sensed {
        Some(Evidence::Proven(..) | Evidence::Below) => sense::address(&config.imds_endpoint),
        _ => None,
    };
    let ec2 = Ec2Api::new(&target.region, imds.client()).await;
    let result = reconcile::reconcile(&ec2, &target, config, progress, deadline, data_plane).await;
    explain_credentials(imds, result).await
}

/// What IMDS itself shows, before any EC2 call, where it can: this instance (not `--instance-id`), a hop
/// limit that is "at least" (not `--exact`), no IPv6 endpoint setting (sensing cannot see it), an `http://`
/// endpoint at an IP address, and `--evidence imds`.
async fn sense_first(config: &Config) -> Option<Evidence> {
    let w = &config.wanted;
    if config.evidence == EvidenceSource::Ec2 || config.instance_id.is_some() || w.exact || w.ipv6_endpoint.is_some() {
        return None;
    }
    let addr = sense::address(&config.imds_endpoint)?;
    let evidence = sense::sense(addr, w.hop_limit, w.instance_tags.is_some()).await;
    match &evidence {
        Evidence::Proven(..) => {}
        Evidence::Below => {
            tracing::debug!("the token answer does not reach this process with TTL >= {}: asking EC2", w.hop_limit)
        }
        Evidence::Unproven(why) => tracing::debug!("the hop limit could not be proven from IMDS ({why}): asking EC2"),
    }
    Some(evidence)
}

/// A credentials failure, said in the instance's own terms: no role attached is the commonest cause; a role
/// whose credentials IMDS served already expired comes next (the SDK uses them anyway, and EC2 answers
/// RequestExpired or AuthFailure). Looked up only on this failure path.
async fn explain_credentials<T>(imds: &Imds, result: Result<T>) -> Result<T> {
    let failure = match &result {
        Err(Error::NoCredentials { .. }) => None,
        Err(Error::ClockSkew { failure }) => Some(failure.clone()),
        _ => return result,
    };
    match imds.has_role().await {
        Ok(false) if failure.is_none() => return Err(Error::NoInstanceRole),
        Ok(true) => {}
        _ => return result,
    }
    if let Ok(Some(expired)) = imds.role_credentials_expiration().await {
        if expired <= std::time::SystemTime::now() {
            return Err(Error::credentials_expired(expired, failure));
        }
    }
    result
}
