//! One run: identity -> current options -> plan -> modify -> poll until applied, inside one deadline.

use crate::cli::EvidenceSource;
use crate::config::Config;
use crate::ec2::{Described, Ec2, Modified};
use crate::error::{Error, Result};
use crate::ids::{InstanceId, Region};
use crate::outcome::{self, Action};
use crate::plan::{self, MetadataOptions, Step, Toggle};
use crate::process::Progress;
use crate::process::signal::Stage;
use crate::retry::Patient;
use crate::verify::{self, End, ReadBack, Wait, Watcher};
use crate::wait::Probes;
use serde::Serialize;
use std::cell::RefCell;
use tokio::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub instance_id: InstanceId,
    pub region: Region,
    pub before: MetadataOptions,
    /// The options after the run: as last read, or as EC2's answer to the change with `--no-wait`.
    pub after: MetadataOptions,
    pub action: Action,
    /// Whether `after` was read back from EC2 as applied, or the token answer was seen at the wanted TTL.
    pub verified: bool,
    /// How the outcome is known: `imds` (the token answer's TTL, no EC2 call for it) or `ec2`.
    pub evidence: EvidenceSource,
    /// What IMDS itself proved, when it was asked and could prove it (`null` otherwise).
    pub sensed: Option<crate::sense::Sensed>,
}

/// One instance to bring to the wanted options, as apply, doctor and the fleet hand it to the same decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub instance_id: InstanceId,
    pub region: Region,
    /// IMDS just answered for this very instance (its id did not come from `--instance-id` or a fleet's
    /// selection), so its endpoint is enabled whatever EC2 reports.
    pub endpoint_vouched: bool,
}

impl Target {
    /// An instance named from outside it (`--instance-id`, a fleet's selection): nothing vouches for its endpoint.
    pub fn named(instance_id: InstanceId, region: Region) -> Self {
        Target { instance_id, region, endpoint_vouched: false }
    }

    /// The options as far as they are known: where IMDS vouches for the endpoint, an endpoint EC2 (or an
    /// emulator) leaves out of its answer is enabled, and no change is sent for it.
    pub fn known(&self, reported: &MetadataOptions) -> MetadataOptions {
        match (self.endpoint_vouched, reported.http_endpoint) {
            (true, None) => MetadataOptions { http_endpoint: Some(Toggle::Enabled), ..reported.clone() },
            _ => reported.clone(),
        }
    }
}

/// What IMDS itself showed before the run, so that EC2 is spared what it proved.
#[derive(Debug, Clone, Default)]
pub struct FromImds {
    /// IMDS's address, where sensing showed that the kernel enforces the minimum TTL on the way to it: a change
    /// is verified by the token answer arriving at the wanted TTL.
    pub data_plane: Option<std::net::SocketAddr>,
    /// The options, the hop limit exactly (`sense::exact`: no router between this process and IMDS). Where the
    /// hop limit is all that must change, the run starts from these instead of DescribeInstances: a change
    /// costs its one ModifyInstanceMetadataOptions.
    pub exact: Option<crate::sense::Sensed>,
}

impl FromImds {
    /// The exactly sensed options, where the hop limit is all they lack of `wanted` (a change of any other field
    /// is planned from EC2's read, as is anything `--exact`).
    fn starting_point(&self, wanted: &plan::Wanted) -> Option<&crate::sense::Sensed> {
        let sensed = self.exact.as_ref()?;
        let hop_only = plan::Change { hop_limit: Some(wanted.hop_limit), ..plan::Change::default() };
        let raises = sensed.hop_limit.is_some_and(|h| h < wanted.hop_limit);
        let decided = plan::decide(&sensed.options(), wanted);
        (raises && !wanted.exact && decided == plan::Decision::Change(hop_only)).then_some(sensed)
    }
}

pub async fn reconcile(ec2: &impl Ec2, target: &Target, run: Run<'_>, imds: &FromImds) -> Result<Report> {
    let Run { config, progress, deadline, .. } = run;
    progress.set(Stage::Ec2);
    let ec2 = Patient::new(ec2);
    let instance_id = &target.instance_id;
    let sensed = imds.starting_point(&config.wanted);
    let before = match sensed {
        Some(sensed) => {
            tracing::debug!(?sensed, "the hop limit, from IMDS itself: no DescribeInstances");
            sensed.options()
        }
        None => {
            let Described { state, options: before, .. } = ec2.describe_instance(instance_id, deadline).await?;
            tracing::debug!(?state, ?before, "current metadata options");
            if state.is_gone() {
                return Err(Error::InstanceGone { instance_id: instance_id.into(), state });
            }
            before
        }
    };
    let known = target.known(&before);
    let report = |after: MetadataOptions, action, verified| Report {
        instance_id: instance_id.clone(),
        region: target.region.clone(),
        before: before.clone(),
        after,
        action,
        verified,
        evidence: if sensed.is_some() { EvidenceSource::Imds } else { EvidenceSource::Ec2 },
        sensed: sensed.cloned(),
    };
    let step = plan::step(plan::decide(&known, &config.wanted), config.intent);
    if let Some((action, verified)) = outcome::before_sending(&step, &before) {
        return Ok(report(before.clone(), action, verified));
    }
    let (change, dry_run) = match step {
        Step::Send { change, dry_run } => (change, dry_run),
        // Somebody's change, still pending (every other step was reported above): seen through to `applied`.
        _ => {
            let (after, _) = run.wait_applied(&ec2, instance_id, &known, false).await?;
            return Ok(report(after, Action::Unchanged, true));
        }
    };
    tracing::debug!(?change, dry_run, "change needed");
    if dry_run {
        ec2.modify(instance_id, &change, true, deadline).await?;
        return Ok(report(before.clone(), Action::WouldChange, false));
    }
    let accepted = match ec2.modify(instance_id, &change, false, deadline).await? {
        Modified::Accepted(options) => options,
        Modified::WouldSucceed => MetadataOptions::default(),
    };
    if run.announce {
        tracing::info!("ModifyInstanceMetadataOptions accepted: {}", before.changes_to(&accepted));
    } else {
        tracing::debug!("ModifyInstanceMetadataOptions accepted: {}", before.changes_to(&accepted));
    }
    if !config.intent.waits() {
        return Ok(report(accepted, Action::Changed, false));
    }
    let expected = change.applied_to(&known);
    // On the data plane where the change is one sensing sees (the hop limit, the endpoint): what a
    // container will see, with no EC2 call; otherwise EC2's `applied`.
    if let Some(addr) = imds
        .data_plane
        .filter(|_| change.http_tokens.is_none() && change.ipv6_endpoint.is_none() && change.instance_tags.is_none())
    {
        run.wait_data_plane(addr, instance_id).await?;
        let after = MetadataOptions { state: None, ..expected };
        return Ok(Report { evidence: EvidenceSource::Imds, ..report(after, Action::Changed, true) });
    }
    let (after, stopped) = run.wait_applied(&ec2, instance_id, &expected, true).await?;
    Ok(report(after, if stopped { Action::AppliesAtStart } else { Action::Changed }, true))
}

/// What the steps of one run share: its settings, where it is (for the message when a deadline or a signal
/// ends it), its deadline, and how it tells that EC2 took a change.
#[derive(Clone, Copy)]
pub struct Run<'a> {
    pub config: &'a Config,
    pub progress: &'a Progress,
    pub deadline: Instant,
    /// Say at INFO that EC2 took the change, before the wait (the one-shot agent); `watch` says it once,
    /// when the change is in effect, so here only at DEBUG.
    pub announce: bool,
}

impl Run<'_> {
    /// Waits, through the one verifier (`verify`, which the fleet uses too), until the change is applied or, the
    /// instance stopped, applies when it starts: `(options as seen, true)`; a terminated instance is gone, one
    /// that cannot be read back is not verified. Bounded by `--wait-timeout` (or `--timeout`, if sooner), which
    /// the message names. `sent`: the change is ours (not somebody's still pending).
    async fn wait_applied<E: Ec2>(
        &self,
        ec2: &Patient<'_, E>,
        instance_id: &InstanceId,
        expected: &MetadataOptions,
        sent: bool,
    ) -> Result<(MetadataOptions, bool)> {
        let Run { config, progress, deadline, .. } = *self;
        progress.set(Stage::Waiting);
        let start = Instant::now();
        let wait = Wait::new(instance_id.clone(), 0, expected.clone(), sent, config.wait_timeout, deadline);
        let waits = RefCell::new(vec![wait]);
        let mut ended = Ended(None);
        verify::verify(&ByOne(ec2), &waits, &config.wanted, &mut ended, deadline).await;
        let Some((wait, end)) = ended.0 else {
            return Err(Error::Unexpected("the wait for `applied` ended without a verdict".into()));
        };
        let seen = wait.seen.map(|(_, options)| options).unwrap_or_default();
        match end {
            End::Applied => {
                tracing::debug!(after_ms = start.elapsed().as_millis() as u64, "change applied");
                Ok((seen, false))
            }
            End::AppliesAtStart => {
                tracing::debug!("stopped, with the wanted values: EC2 applies them when it starts");
                Ok((seen, true))
            }
            End::Failed(err) => Err(err),
        }
    }

    /// Probes the token answer at the wanted TTL about every 200 to 300 ms until it arrives: the change is in
    /// effect where a container gets its token. Bounded by `--wait-timeout` (or `--timeout`, if sooner).
    async fn wait_data_plane(&self, addr: std::net::SocketAddr, instance_id: &str) -> Result<()> {
        let Run { config, progress, deadline, .. } = *self;
        progress.set(Stage::Waiting);
        let start = Instant::now();
        let (give_up, bound) = verify::give_up(config.wait_timeout, deadline);
        let wanted = config.wanted.hop_limit;
        let mut probes = 0u32;
        loop {
            probes += 1;
            let probe = Instant::now();
            if crate::sense::arrives(addr, wanted, Probes::DATA_PLANE.probe).await {
                tracing::debug!(
                    after_ms = start.elapsed().as_millis() as u64,
                    probes,
                    "the token answer arrives at TTL >= {wanted}"
                );
                return Ok(());
            }
            let next = Probes::DATA_PLANE.next(probe);
            if next >= give_up {
                return Err(Error::WaitTimeout {
                    instance_id: instance_id.into(),
                    waited: start.elapsed(),
                    last: format!(
                        "the token answer does not yet reach this process with TTL >= {wanted} ({probes} probes)"
                    ),
                    bound,
                });
            }
            tokio::time::sleep_until(next).await;
        }
    }
}

/// The agent's read-back: its one instance, by id.
struct ByOne<'a, 'b, E>(&'a Patient<'b, E>);

impl<E: Ec2> ReadBack for ByOne<'_, '_, E> {
    async fn read_back(&self, ids: &[InstanceId], until: Instant) -> Result<Vec<Described>> {
        let mut read = Vec::with_capacity(ids.len());
        for id in ids {
            let d = self.0.describe_instance(id, until).await?;
            tracing::trace!(state = ?d.options.state, hop_limit = ?d.options.hop_limit, "read back");
            read.push(d);
        }
        Ok(read)
    }
}

/// The one wait's end.
struct Ended(Option<(Wait, End)>);

impl Watcher for Ended {
    fn ended(&mut self, wait: Wait, end: End) {
        self.0 = Some((wait, end));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fakes::{Scripted, config, options};
    use crate::plan::Intent;
    use crate::plan::State;
    use crate::plan::{Change, HopLimit};
    use std::time::Duration;

    async fn run(ec2: &Scripted, config: &Config) -> Result<Report> {
        let deadline = Instant::now() + config.timeout;
        let target = Target {
            instance_id: "i-12345678".into(),
            region: "us-west-2".into(),
            endpoint_vouched: config.instance_id.is_none(),
        };
        let progress = Progress::default();
        let run = Run { config, progress: &progress, deadline, announce: true };
        reconcile(ec2, &target, run, &FromImds::default()).await
    }

    #[tokio::test(start_paused = true)]
    async fn compliant_instance_gets_no_modify() {
        let ec2 = Scripted::new(vec![options(2, State::Applied)]);
        let r = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap();
        assert_eq!(r.action, Action::Unchanged);
        assert!(ec2.modifies.borrow().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn change_then_wait_for_applied() {
        let ec2 = Scripted::new(vec![
            options(1, State::Applied),
            options(2, State::Pending),
            options(2, State::Pending),
            options(2, State::Applied),
        ]);
        let r = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap();
        assert_eq!(r.action, Action::Changed);
        assert!(r.verified);
        assert_eq!(r.after.state, Some(State::Applied));
        let modifies = ec2.modifies.borrow();
        assert_eq!(modifies.len(), 1);
        assert_eq!(modifies[0].0, Change { hop_limit: HopLimit::new(2), ..Change::default() });
        assert!(!modifies[0].1);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_forever_gives_up_at_wait_timeout() {
        let ec2 = Scripted::new(vec![options(1, State::Applied), options(2, State::Pending)]);
        let start = Instant::now();
        let err = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap_err();
        assert!(matches!(err, Error::WaitTimeout { .. }), "{err}");
        assert_eq!(err.exit_code() as u8, 6);
        let took = start.elapsed();
        assert!(took <= Duration::from_secs(5) && took >= Duration::from_millis(4500), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn check_and_dry_run_never_modify_for_real() {
        let ec2 = Scripted::new(vec![options(1, State::Applied)]);
        let r = run(&ec2, &config(Intent::Check)).await.unwrap();
        assert_eq!(r.action, Action::NotCompliant);
        assert!(ec2.modifies.borrow().is_empty());
        let r = run(&ec2, &config(Intent::DryRun)).await.unwrap();
        assert_eq!(r.action, Action::WouldChange);
        assert!(ec2.modifies.borrow().iter().all(|(_, dry)| *dry));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_returns_what_ec2_accepted() {
        let ec2 = Scripted::new(vec![options(1, State::Applied)]);
        let r = run(&ec2, &config(Intent::Apply { wait: false })).await.unwrap();
        assert_eq!(r.action, Action::Changed);
        assert!(!r.verified);
        assert_eq!(r.after.state, Some(State::Pending));
    }

    #[tokio::test(start_paused = true)]
    async fn right_values_still_pending_are_waited_for() {
        let ec2 = Scripted::new(vec![options(2, State::Pending), options(2, State::Applied)]);
        let r = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap();
        assert_eq!(r.action, Action::Unchanged);
        assert!(r.verified);
        let r = run(&Scripted::new(vec![options(2, State::Pending)]), &config(Intent::Check)).await.unwrap();
        assert_eq!(r.action, Action::NotCompliant);
    }

    fn exactly(hop: i64) -> crate::sense::Sensed {
        let hop_limit = HopLimit::new(hop).unwrap();
        crate::sense::Sensed {
            hop_limit_at_least: hop_limit,
            hop_limit: Some(hop_limit),
            http_tokens: Some(crate::plan::HttpTokens::Optional),
            instance_tags: None,
        }
    }

    /// The hop limit known exactly from IMDS is the run's starting point only where it is all that must
    /// change, and only ever raised: never with `--exact`, another field to change, or a hop limit not below.
    #[test]
    fn only_a_hop_limit_to_raise_alone_starts_from_imds() {
        let imds = |hop| FromImds { data_plane: None, exact: Some(exactly(hop)) };
        let wanted = config(Intent::Apply { wait: true }).wanted;
        assert!(imds(1).starting_point(&wanted).is_some());
        assert!(imds(2).starting_point(&wanted).is_none(), "in effect: nothing to start");
        assert!(imds(3).starting_point(&wanted).is_none(), "above: never lowered");
        assert!(imds(3).starting_point(&crate::plan::Wanted { exact: true, ..wanted }).is_none());
        assert!(imds(1).starting_point(&crate::plan::Wanted { exact: true, ..wanted }).is_none(), "--exact: EC2");
        let tokens = crate::plan::Wanted { http_tokens: Some(crate::plan::HttpTokens::Required), ..wanted };
        assert!(imds(1).starting_point(&tokens).is_none(), "HttpTokens to change too: EC2's read first");
        let unsensed = FromImds { exact: Some(crate::sense::Sensed { http_tokens: None, ..exactly(1) }), ..imds(1) };
        let tokens_kept = crate::plan::Wanted { http_tokens: Some(crate::plan::HttpTokens::Optional), ..wanted };
        assert!(unsensed.starting_point(&tokens_kept).is_none(), "HttpTokens wanted but not sensed");
        assert!(FromImds::default().starting_point(&wanted).is_none());
    }

    /// From IMDS's exact hop limit: one modify, of the hop limit alone, and no read before it (the script's
    /// first read says 2, applied: had it been read first, nothing would have been sent).
    #[tokio::test(start_paused = true)]
    async fn a_change_from_imds_is_sent_without_a_read_first() {
        let ec2 = Scripted::new(vec![options(2, State::Applied)]);
        let c = config(Intent::Apply { wait: true });
        let target = Target { instance_id: "i-12345678".into(), region: "us-west-2".into(), endpoint_vouched: true };
        let progress = Progress::default();
        let run = Run { config: &c, progress: &progress, deadline: Instant::now() + c.timeout, announce: true };
        let imds = FromImds { data_plane: None, exact: Some(exactly(1)) };
        let r = reconcile(&ec2, &target, run, &imds).await.unwrap();
        assert_eq!((r.action, r.evidence, r.verified), (Action::Changed, EvidenceSource::Imds, true));
        assert_eq!(r.before.hop_limit, HopLimit::new(1));
        assert_eq!(*ec2.modifies.borrow(), [(Change { hop_limit: HopLimit::new(2), ..Change::default() }, false)]);
        let r = reconcile(&ec2, &target, Run { config: &config(Intent::Check), ..run }, &imds).await.unwrap();
        assert_eq!(r.action, Action::NotCompliant, "check: not compliant by IMDS, nothing sent");
        assert_eq!(ec2.modifies.borrow().len(), 1);
    }

    /// moto's way: after a change, only the state and the fields sent are reported.
    #[tokio::test(start_paused = true)]
    async fn fields_left_out_after_a_change_are_the_ones_kept() {
        let sparse = |hop| MetadataOptions {
            state: Some(State::Applied),
            hop_limit: HopLimit::new(hop),
            ..MetadataOptions::default()
        };
        let ec2 = Scripted::new(vec![options(1, State::Applied), sparse(2)]);
        let r = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap();
        assert_eq!((r.action, r.verified), (Action::Changed, true));
        // The second run: EC2 no longer reports the endpoint, but IMDS just answered for this instance.
        let ec2 = Scripted::new(vec![sparse(2)]);
        let r = run(&ec2, &config(Intent::Apply { wait: true })).await.unwrap();
        assert_eq!(r.action, Action::Unchanged);
        assert!(ec2.modifies.borrow().is_empty());
        // Given --instance-id, the instance may not be this one: an unreported endpoint is set.
        let c = Config { instance_id: Some("i-12345678".into()), ..config(Intent::Apply { wait: true }) };
        let ec2 = Scripted::new(vec![sparse(2), sparse(2)]);
        run(&ec2, &c).await.unwrap();
        let modifies = ec2.modifies.borrow();
        assert_eq!(modifies[0].0, Change { http_endpoint: Some(Toggle::Enabled), ..Change::default() });
    }
}
