//! One pass of the agent over one instance, shared by `apply`/`check` (one pass) and `watch` (one every
//! interval): sense the hop limit from IMDS itself where it can be proven (no EC2 call when compliant),
//! otherwise EC2's read, decide, change and verify (`reconcile`). Where a credentials failure ends it, the
//! instance's own terms say why.

use crate::cli::EvidenceSource;
use crate::config::Config;
use crate::ec2::Ec2Api;
use crate::error::{Error, Result};
use crate::imds::{Imds, Metadata, Probe};
use crate::outcome::Action;
use crate::plan::MetadataOptions;
use crate::process::Progress;
use crate::reconcile::{self, Report, Run};
use crate::sense::{self, Evidence};
use crate::wait::Backoff;
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
    let target = identity(&imds, config, deadline).await?;
    tracing::debug!(?target, "identity");
    progress.identified(&target.instance_id, &target.region);
    // Nothing answered the probes (IMDS not up yet at boot) but the identity's retries found it: sense again.
    let sensed = match sensed {
        Some(e) if sense::unreachable(&e) => sense_first(config).await,
        other => other,
    };
    look(&imds, target, sensed, Run { config, progress, deadline, announce: true }).await
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
    look(imds, target, sensed, Run { config, progress, deadline, announce: false }).await
}

/// The rest of a pass once sensing has spoken: compliant by IMDS, or EC2's read, decision, change and check.
async fn look(imds: &Imds, target: reconcile::Target, sensed: Option<Evidence>, run: Run<'_>) -> Result<Report> {
    let config = run.config;
    if let Some(Evidence::Proven(s, _)) = &sensed {
        if sense::compliant(s, &config.wanted) {
            return Ok(compliant_by_imds(target, s));
        }
    }
    // Below the wanted hop limit, with the kernel enforcing the minimum TTL on the way to IMDS, and no router
    // between: the token answer's TTL is the hop limit itself. A change is then verified there, where the answer
    // arrives at the wanted TTL (from behind a router it would arrive with less, however long one waited), and
    // needs no DescribeInstances where the hop limit is known exactly.
    let adjacent = match (&sensed, sense::address(&config.imds_endpoint)) {
        (Some(Evidence::Below), Some(addr)) => match sense::adjacent(addr).await {
            Ok(adjacent) => Some(adjacent),
            Err(why) => {
                tracing::debug!("the token answer's TTL is not the hop limit ({why}): asking EC2");
                None
            }
        },
        _ => None,
    };
    let exact = match &adjacent {
        Some(adjacent) if target.endpoint_vouched => {
            let w = &config.wanted;
            match sense::exact(adjacent, w.hop_limit, w.instance_tags.is_some()).await {
                Ok(sensed) => Some(sensed),
                Err(why) => {
                    tracing::debug!("the hop limit is not known exactly from IMDS ({why}): asking EC2");
                    None
                }
            }
        }
        _ => None,
    };
    let data_plane = adjacent.map(|a| a.addr());
    let ec2 = Ec2Api::new(&target.region, imds.client()).await;
    let result = reconcile::reconcile(&ec2, &target, run, &reconcile::FromImds { data_plane, exact }).await;
    explain_credentials(imds, result).await
}

/// Instance id and region: flags first, then IMDS. A metadata service that does not accept connections
/// yet (early boot), or answers 429 or 5xx, is retried with jittered backoff until `config.imds_timeout`
/// (or `deadline`, if sooner); any other failure ends the run at once. The bound keeps a missing IMDS from
/// holding docker.service back for the whole `--timeout` at every boot.
pub async fn identity(imds: &impl Metadata, config: &Config, deadline: Instant) -> Result<reconcile::Target> {
    let bound = (Instant::now() + config.imds_timeout).min(deadline);
    let read = || async {
        let asked = Instant::now();
        let id = match &config.instance_id {
            Some(id) => id.clone(),
            None => imds.instance_id().await?,
        };
        let region = match &config.region {
            Some(region) => region.clone(),
            None => imds.region().await?,
        };
        let took = asked.elapsed();
        if took > crate::imds::SLOW && (config.instance_id.is_none() || config.region.is_none()) {
            tracing::warn!(
                "the instance metadata service took {:.1} s to answer (on EC2 it answers in milliseconds): something \
                 on the way is slow",
                took.as_secs_f64()
            );
        }
        Ok((id, region))
    };
    // Not up yet (early boot), throttling or failing: may heal. Anything else ends the run at once.
    let backoff = |err: &Error| {
        matches!(err, Error::MetadataUnreachable { .. } | Error::MetadataBusy { .. }).then_some(Backoff::METADATA)
    };
    let retrying = |err: &Error, delay: std::time::Duration| {
        tracing::warn!("{err}; retrying in {:.1} s", delay.as_secs_f64());
    };
    let give_up = |err: Error, waited: std::time::Duration| match err {
        Error::MetadataUnreachable { endpoint, detail } => Error::MetadataUnreachable {
            endpoint,
            detail: format!(
                "{detail}; still none after {:.0} s ({})",
                waited.as_secs_f64(),
                if bound < deadline { "--imds-timeout" } else { "--timeout" }
            ),
        },
        other => other,
    };
    let (instance_id, region) = crate::retry::retry(bound, backoff, read, retrying, give_up).await?;
    Ok(reconcile::Target { instance_id, region, endpoint_vouched: config.instance_id.is_none() })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::config;
    use crate::ids::{InstanceId, Region};
    use crate::plan::Intent;
    use reconcile::Target;
    use std::time::Duration;

    struct Unreachable;
    impl Metadata for Unreachable {
        async fn instance_id(&self) -> Result<InstanceId> {
            Err(Error::MetadataUnreachable { endpoint: "e".into(), detail: "refused".into() })
        }
        async fn region(&self) -> Result<Region> {
            unreachable!()
        }
        async fn has_role(&self) -> Result<bool> {
            unreachable!()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_metadata_is_retried_until_the_deadline() {
        let start = Instant::now();
        let err = identity(&Unreachable, &config(Intent::Apply { wait: true }), start + Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::MetadataUnreachable { .. }));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(10), "{took:?}");
    }

    /// A missing IMDS holds boot back for `--imds-timeout` (30 s by default), not for the whole `--timeout`.
    #[tokio::test(start_paused = true)]
    async fn unreachable_metadata_is_retried_until_the_imds_bound() {
        let start = Instant::now();
        let c = Config { imds_timeout: Duration::from_secs(30), ..config(Intent::Apply { wait: true }) };
        let err = identity(&Unreachable, &c, start + Duration::from_secs(180)).await.unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(25) && took <= Duration::from_secs(30), "{took:?}");
        assert!(err.to_string().contains("--imds-timeout"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn flags_need_no_metadata() {
        let c = Config {
            instance_id: Some("i-12345678".into()),
            region: Some("eu-west-1".into()),
            ..config(Intent::Apply { wait: true })
        };
        let got = identity(&Unreachable, &c, Instant::now()).await.unwrap();
        assert_eq!(
            got,
            Target::named("i-12345678".into(), "eu-west-1".into()),
            "given by flags: nothing vouches for the endpoint"
        );
    }
}
