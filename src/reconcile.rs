//! One run: identity -> current options -> plan -> modify -> poll until applied, inside one deadline.

use crate::cli::EvidenceSource;
use crate::config::Config;
use crate::ec2::{Described, Ec2, Modified};
use crate::error::{Error, FailureKind, Result, Stage};
use crate::ids::{InstanceId, Region};
use crate::imds::Metadata;
use crate::plan::{self, Change, InstanceState, MetadataOptions, State, Step, Toggle};
use crate::process::Progress;
use crate::verify::{self, End, ReadBack, Wait, Watcher};
use crate::wait::{Backoff, Pace};
use serde::Serialize;
use std::cell::Cell;
use std::cell::RefCell;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Already compliant: nothing was sent.
    Unchanged,
    /// Modified (and, unless `--no-wait`, verified applied).
    Changed,
    /// `--dry-run`: EC2 says the change would be authorized.
    WouldChange,
    /// `check`: a change is needed.
    NotCompliant,
    /// Changed a stopped instance, and read back with the new values: EC2 applies them when it starts.
    #[serde(rename = "changed-applies-at-start")]
    AppliesAtStart,
}

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

/// Instance id and region: flags first, then IMDS. A metadata service that does not accept connections
/// yet (early boot), or answers 429 or 5xx, is retried with jittered backoff until `config.imds_timeout`
/// (or `deadline`, if sooner); any other failure ends the run at once. The bound keeps a missing IMDS from
/// holding docker.service back for the whole `--timeout` at every boot.
pub async fn identity(imds: &impl Metadata, config: &Config, deadline: Instant) -> Result<Target> {
    let start = Instant::now();
    let bound = (start + config.imds_timeout).min(deadline);
    let mut attempt = 0;
    loop {
        let asked = Instant::now();
        let result = async {
            let id = match &config.instance_id {
                Some(id) => id.clone(),
                None => imds.instance_id().await?,
            };
            let region = match &config.region {
                Some(region) => region.clone(),
                None => imds.region().await?,
            };
            Ok((id, region))
        }
        .await;
        let err = match result {
            Ok(identity) => {
                let took = asked.elapsed();
                if took > crate::imds::SLOW && (config.instance_id.is_none() || config.region.is_none()) {
                    tracing::warn!(
                        "the instance metadata service took {:.1} s to answer (on EC2 it answers in milliseconds): \
                         something on the way is slow",
                        took.as_secs_f64()
                    );
                }
                let (instance_id, region) = identity;
                return Ok(Target { instance_id, region, endpoint_vouched: config.instance_id.is_none() });
            }
            Err(err @ (Error::MetadataUnreachable { .. } | Error::MetadataBusy { .. })) => err,
            Err(other) => return Err(other),
        };
        let delay = Backoff::METADATA.delay(attempt);
        if Instant::now() + delay >= bound {
            return Err(match err {
                Error::MetadataUnreachable { endpoint, detail } => Error::MetadataUnreachable {
                    endpoint,
                    detail: format!(
                        "{detail}; still none after {:.0} s ({})",
                        start.elapsed().as_secs_f64(),
                        if bound < deadline { "--imds-timeout" } else { "--timeout" }
                    ),
                },
                other => other,
            });
        }
        tracing::warn!("{err}; retrying in {:.1} s", delay.as_secs_f64());
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// An EC2 side that takes throttling and passing failures as normal: each call is retried with full jitter
/// (`Failure::retry` says with which backoff, or that retrying cannot help) until the deadline it is given,
/// and only then fails, with what EC2 answered last. A change that EC2 may have carried out (a timeout or a
/// 5xx after it was sent) is looked up before it is sent again, so one run never sends an accepted change
/// twice.
pub struct Patient<'a, E> {
    inner: &'a E,
    /// Throttling is said once, at INFO; each retry after that at DEBUG.
    told: Cell<bool>,
    /// The fleet's pace for ModifyInstanceMetadataOptions (only `modify` uses it): every attempt, retries
    /// included, waits for it, and each throttled answer slows it down.
    pace: Option<&'a Pace>,
}

impl<'a, E> Patient<'a, E> {
    pub fn new(inner: &'a E) -> Self {
        Patient { inner, told: Cell::new(false), pace: None }
    }

    pub fn inner(&self) -> &'a E {
        self.inner
    }

    /// Modifies paced by `pace` (the fleet).
    pub fn paced(inner: &'a E, pace: &'a Pace) -> Self {
        Patient { pace: Some(pace), ..Self::new(inner) }
    }

    /// `call`, retried as every call here is, until `until`.
    pub async fn retry<T, F: Future<Output = Result<T>>>(
        &self,
        operation: &'static str,
        until: Instant,
        mut call: impl FnMut(&'a E) -> F,
    ) -> Result<T> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            match call(self.inner).await {
                Ok(value) => return Ok(value),
                Err(err) => self.back_off(operation, err, &mut attempt, start, until).await?,
            }
        }
    }
}

impl<E: Ec2> Patient<'_, E> {
    pub async fn describe(&self, instance_id: &str, until: Instant) -> Result<MetadataOptions> {
        Ok(self.describe_instance(instance_id, until).await?.1)
    }

    pub async fn describe_instance(
        &self,
        instance_id: &str,
        until: Instant,
    ) -> Result<(InstanceState, MetadataOptions)> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            let err = match self.inner.describe_instance(instance_id).await {
                Ok(found) => return Ok(found),
                Err(err) => err,
            };
            self.back_off("DescribeInstances", err, &mut attempt, start, until).await?;
        }
    }

    pub async fn modify(&self, instance_id: &str, change: &Change, dry_run: bool, until: Instant) -> Result<Modified> {
        let mut attempt = 0;
        let start = Instant::now();
        loop {
            if let Some(pace) = self.pace {
                if !pace.acquire_before(until).await {
                    let (rate, throttled) = pace.slowed();
                    let operation = "ModifyInstanceMetadataOptions";
                    return Err(Error::NotSent { operation, rate, throttled, limit: None });
                }
            }
            let err = match self.inner.modify(instance_id, change, dry_run).await {
                Ok(modified) => {
                    if let Some(pace) = self.pace {
                        pace.accepted();
                    }
                    return Ok(modified);
                }
                Err(err) => err,
            };
            let maybe_done = matches!(&err, Error::Ec2 { failure, .. } if failure.maybe_done());
            if let (Some(pace), Error::Ec2 { failure, .. }) = (self.pace, &err) {
                if failure.kind == FailureKind::Throttled {
                    pace.throttled();
                }
            }
            self.back_off("ModifyInstanceMetadataOptions", err, &mut attempt, start, until).await?;
            if maybe_done && !dry_run {
                let now = self.describe(instance_id, until).await?;
                if change.is_reflected_in(&now) {
                    tracing::debug!("the change was carried out although its answer was lost; not sending it again");
                    return Ok(Modified::Accepted(now));
                }
            }
        }
    }
}

impl<E> Patient<'_, E> {
    /// Waits before the next attempt, or returns the error when retrying cannot help or `until` would pass.
    async fn back_off(
        &self,
        operation: &'static str,
        err: Error,
        attempt: &mut u32,
        start: Instant,
        until: Instant,
    ) -> Result<()> {
        let Error::Ec2 { failure, .. } = &err else { return Err(err) };
        let Some(backoff) = failure.retry() else { return Err(err) };
        let delay = backoff.delay(*attempt);
        if Instant::now() + delay >= until {
            return Err(Error::GaveUp {
                operation,
                waited: start.elapsed(),
                last: Box::new(failure.clone()),
                limit: None,
            });
        }
        if failure.kind == FailureKind::Throttled && !self.told.replace(true) {
            tracing::info!(
                "EC2 is throttling this account's requests ({}): backing off with jitter until the deadline",
                failure.code.as_deref().unwrap_or("throttled")
            );
        } else {
            tracing::debug!("ec2:{operation}: {failure}; retrying in {:.2} s", delay.as_secs_f64());
        }
        tokio::time::sleep(delay).await;
        *attempt += 1;
        Ok(())
    }
}

/// `data_plane`: IMDS's address where sensing showed that the kernel enforces the minimum TTL on the way to
/// it, so that a change can be verified by the token answer arriving at the wanted TTL.
pub async fn reconcile(
    ec2: &impl Ec2,
    target: &Target,
    config: &Config,
    progress: &Progress,
    deadline: Instant,
    data_plane: Option<std::net::SocketAddr>,
) -> Result<Report> {
    progress.set(Stage::Ec2);
    let ec2 = Patient::new(ec2);
    let instance_id = &target.instance_id;
    let (state, before) = ec2.describe_instance(instance_id, deadline).await?;
    tracing::debug!(?state, ?before, "current metadata options");
    if state.is_gone() {
        return Err(Error::InstanceGone { instance_id: instance_id.into(), state });
    }
    let known = target.known(&before);
    let report = |after: MetadataOptions, action, verified| Report {
        instance_id: instance_id.clone(),
        region: target.region.clone(),
        before: before.clone(),
        after,
        action,
        verified,
        evidence: EvidenceSource::Ec2,
        sensed: None,
    };
    let (change, dry_run) = match plan::step(plan::decide(&known, &config.wanted), config.intent()) {
        Step::Nothing => {
            let applied = before.state == Some(State::Applied);
            return Ok(report(before.clone(), Action::Unchanged, applied));
        }
        Step::NotCompliant => return Ok(report(before.clone(), Action::NotCompliant, false)),
        Step::LeavePending => return Ok(report(before.clone(), Action::Unchanged, false)),
        Step::SeeThrough => {
            let (after, _) = wait_applied(&ec2, instance_id, &known, false, config, progress, deadline).await?;
            return Ok(report(after, Action::Unchanged, true));
        }
        Step::Send { change, dry_run } => (change, dry_run),
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
    // `watch` says it once, when the change is in effect.
    if config.watch.is_some() {
        tracing::debug!("ModifyInstanceMetadataOptions accepted: {}", before.changes_to(&accepted));
    } else {
        tracing::info!("ModifyInstanceMetadataOptions accepted: {}", before.changes_to(&accepted));
    }
    if !config.wait {
        return Ok(report(accepted, Action::Changed, false));
    }
    let expected = change.applied_to(&known);
    // On the data plane where the change is one sensing sees (the hop limit, the endpoint): what a
    // container will see, with no EC2 call; otherwise EC2's `applied`.
    if let Some(addr) = data_plane
        .filter(|_| change.http_tokens.is_none() && change.ipv6_endpoint.is_none() && change.instance_tags.is_none())
    {
        wait_data_plane(addr, instance_id, config, progress, deadline).await?;
        let after = MetadataOptions { state: None, ..expected };
        return Ok(Report { evidence: EvidenceSource::Imds, ..report(after, Action::Changed, true) });
    }
    let (after, stopped) = wait_applied(&ec2, instance_id, &expected, true, config, progress, deadline).await?;
    Ok(report(after, if stopped { Action::AppliesAtStart } else { Action::Changed }, true))
}

/// Waits, through the one verifier (`verify`, which the fleet uses too), until the change is applied or, the
/// instance stopped, applies when it starts: `(options as seen, true)`; a terminated instance is gone, one
/// that cannot be read back is not verified. Bounded by `--wait-timeout` (or `--timeout`, if sooner), which
/// the message names. `sent`: the change is ours (not somebody's still pending).
async fn wait_applied<E: Ec2>(
    ec2: &Patient<'_, E>,
    instance_id: &InstanceId,
    expected: &MetadataOptions,
    sent: bool,
    config: &Config,
    progress: &Progress,
    deadline: Instant,
) -> Result<(MetadataOptions, bool)> {
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

/// The agent's read-back: its one instance, by id.
struct ByOne<'a, 'b, E>(&'a Patient<'b, E>);

impl<E: Ec2> ReadBack for ByOne<'_, '_, E> {
    async fn read_back(&self, ids: &[InstanceId], until: Instant) -> Result<Vec<Described>> {
        let mut read = Vec::with_capacity(ids.len());
        for id in ids {
            let (state, options) = self.0.describe_instance(id, until).await?;
            tracing::trace!(state = ?options.state, hop_limit = ?options.hop_limit, "read back");
            read.push(Described { instance_id: id.clone(), state, options });
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

/// Probes the token answer at the wanted TTL about every 200 to 300 ms until it arrives: the change is in
/// effect where a container gets its token. Bounded by `--wait-timeout` (or `--timeout`, if sooner).
async fn wait_data_plane(
    addr: std::net::SocketAddr,
    instance_id: &str,
    config: &Config,
    progress: &Progress,
    deadline: Instant,
) -> Result<()> {
    progress.set(Stage::Waiting);
    let start = Instant::now();
    let (give_up, bound) = verify::give_up(config.wait_timeout, deadline);
    let wanted = config.wanted.hop_limit;
    let mut probes = 0u32;
    loop {
        probes += 1;
        let probe = Instant::now();
        if crate::sense::arrives(addr, wanted, DATA_PLANE_PROBE).await {
            tracing::debug!(
                after_ms = start.elapsed().as_millis() as u64,
                probes,
                "the token answer arrives at TTL >= {wanted}"
            );
            return Ok(());
        }
        let next = probe + DATA_PLANE_PROBE + DATA_PLANE_JITTER.mul_f64(fastrand::f64());
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

/// Each data-plane probe waits this long for the token answer; the next starts up to `DATA_PLANE_JITTER`
/// later, so the probes come about every 200 to 300 ms.
const DATA_PLANE_PROBE: Duration = Duration::from_millis(200);
const DATA_PLANE_JITTER: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::fakes::{Scripted, config, options};
    use crate::plan::{Change, HopLimit};

    async fn run(ec2: &Scripted, config: &Config) -> Result<Report> {
        let deadline = Instant::now() + config.timeout;
        let target = Target {
            instance_id: "i-12345678".into(),
            region: "us-west-2".into(),
            endpoint_vouched: config.instance_id.is_none(),
        };
        reconcile(ec2, &target, config, &Progress::default(), deadline, None).await
    }

    #[tokio::test(start_paused = true)]
    async fn compliant_instance_gets_no_modify() {
        let ec2 = Scripted::new(vec![options(2, State::Applied)]);
        let r = run(&ec2, &config(Mode::Apply)).await.unwrap();
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
        let r = run(&ec2, &config(Mode::Apply)).await.unwrap();
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
        let err = run(&ec2, &config(Mode::Apply)).await.unwrap_err();
        assert!(matches!(err, Error::WaitTimeout { .. }), "{err}");
        assert_eq!(err.exit_code() as u8, 6);
        let took = start.elapsed();
        assert!(took <= Duration::from_secs(5) && took >= Duration::from_millis(4500), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn check_and_dry_run_never_modify_for_real() {
        let ec2 = Scripted::new(vec![options(1, State::Applied)]);
        let r = run(&ec2, &config(Mode::Check)).await.unwrap();
        assert_eq!(r.action, Action::NotCompliant);
        assert!(ec2.modifies.borrow().is_empty());
        let r = run(&ec2, &config(Mode::DryRun)).await.unwrap();
        assert_eq!(r.action, Action::WouldChange);
        assert!(ec2.modifies.borrow().iter().all(|(_, dry)| *dry));
    }

    #[tokio::test(start_paused = true)]
    async fn no_wait_returns_what_ec2_accepted() {
        let ec2 = Scripted::new(vec![options(1, State::Applied)]);
        let r = run(&ec2, &Config { wait: false, ..config(Mode::Apply) }).await.unwrap();
        assert_eq!(r.action, Action::Changed);
        assert!(!r.verified);
        assert_eq!(r.after.state, Some(State::Pending));
    }

    #[tokio::test(start_paused = true)]
    async fn right_values_still_pending_are_waited_for() {
        let ec2 = Scripted::new(vec![options(2, State::Pending), options(2, State::Applied)]);
        let r = run(&ec2, &config(Mode::Apply)).await.unwrap();
        assert_eq!(r.action, Action::Unchanged);
        assert!(r.verified);
        let r = run(&Scripted::new(vec![options(2, State::Pending)]), &config(Mode::Check)).await.unwrap();
        assert_eq!(r.action, Action::NotCompliant);
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
        let r = run(&ec2, &config(Mode::Apply)).await.unwrap();
        assert_eq!((r.action, r.verified), (Action::Changed, true));
        // The second run: EC2 no longer reports the endpoint, but IMDS just answered for this instance.
        let ec2 = Scripted::new(vec![sparse(2)]);
        let r = run(&ec2, &config(Mode::Apply)).await.unwrap();
        assert_eq!(r.action, Action::Unchanged);
        assert!(ec2.modifies.borrow().is_empty());
        // Given --instance-id, the instance may not be this one: an unreported endpoint is set.
        let c = Config { instance_id: Some("i-12345678".into()), ..config(Mode::Apply) };
        let ec2 = Scripted::new(vec![sparse(2), sparse(2)]);
        run(&ec2, &c).await.unwrap();
        let modifies = ec2.modifies.borrow();
        assert_eq!(modifies[0].0, Change { http_endpoint: Some(Toggle::Enabled), ..Change::default() });
    }

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
        let err = identity(&Unreachable, &config(Mode::Apply), start + Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(err, Error::MetadataUnreachable { .. }));
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(5) && took < Duration::from_secs(10), "{took:?}");
    }

    /// A missing IMDS holds boot back for `--imds-timeout` (30 s by default), not for the whole `--timeout`.
    #[tokio::test(start_paused = true)]
    async fn unreachable_metadata_is_retried_until_the_imds_bound() {
        let start = Instant::now();
        let c = Config { imds_timeout: Duration::from_secs(30), ..config(Mode::Apply) };
        let err = identity(&Unreachable, &c, start + Duration::from_secs(180)).await.unwrap_err();
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(25) && took <= Duration::from_secs(30), "{took:?}");
        assert!(err.to_string().contains("--imds-timeout"), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn flags_need_no_metadata() {
        let c =
            Config { instance_id: Some("i-12345678".into()), region: Some("eu-west-1".into()), ..config(Mode::Apply) };
        let got = identity(&Unreachable, &c, Instant::now()).await.unwrap();
        assert_eq!(
            got,
            Target::named("i-12345678".into(), "eu-west-1".into()),
            "given by flags: nothing vouches for the endpoint"
        );
    }

    #[test]
    fn describe_change_names_only_what_differs() {
        assert_eq!(options(1, State::Applied).changes_to(&options(2, State::Pending)), "hop limit 1 -> 2");
        assert_eq!(options(2, State::Applied).changes_to(&options(2, State::Applied)), "no change");
    }
}
