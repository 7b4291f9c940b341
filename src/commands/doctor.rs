//! `imds-hop-limit doctor`: explains, step by step, why this instance or this container gets no
//! credentials, and changes nothing. A step that cannot run because an earlier one failed is skipped.

use crate::cli::Output;
use crate::config::Config;
use crate::ec2::{Ec2, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::hops::{self, Hops};
use crate::imds::{Imds, Probe};
use crate::plan::{self, Change, Decision, HttpTokens, Intent, Step};
use crate::process::{self, Progress};
use crate::reconcile::Target;
use crate::retry::Patient;
use crate::sense;
use crate::source::Source;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

pub fn run(config: Config) -> Result<ExitCode> {
    let checks = process::block_on(config.timeout, &Progress::default(), |_| async {
        let imds = Imds::new(&config.imds_endpoint)?;
        let around = surroundings(&config.imds_endpoint).await;
        let ec2 = async |region: &str| Ec2Api::new(region, imds.client()).await;
        Ok(diagnose(&config, &around, &imds, ec2).await)
    })?;
    let code = exit_code(&checks);
    match config.output {
        Output::Json => {
            process::emit_json(&serde_json::json!({ "checks": checks, "exit_code": code as u8, "error": null }))
        }
        Output::Text => process::emit(&render(&checks)),
    }
    Ok(code)
}

/// The report of a doctor run that ended before any step could run (its settings refused, a signal).
pub fn failed(err: &Error) -> serde_json::Value {
    serde_json::json!({ "checks": [], "exit_code": err.exit_code() as u8, "error": err.to_string() })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub step: &'static str,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The exit code a failure of this step means (the table apply uses).
    #[serde(skip)]
    pub code: Option<ExitCode>,
}

impl Check {
    fn ok(step: &'static str, detail: impl Into<String>) -> Self {
        Check { step, status: Status::Ok, detail: detail.into(), hint: None, code: None }
    }
    fn warn(step: &'static str, detail: impl Into<String>, hint: impl Into<String>) -> Self {
        Check { step, status: Status::Warn, detail: detail.into(), hint: Some(hint.into()), code: None }
    }
    fn skip(step: &'static str, why: &str) -> Self {
        Check { step, status: Status::Skip, detail: format!("skipped: {why}"), hint: None, code: None }
    }
    fn fail(step: &'static str, err: &Error, hint: Option<String>) -> Self {
        Check { step, status: Status::Fail, detail: err.to_string(), hint, code: Some(err.exit_code()) }
    }
}

/// The exit code of the first blocking failure, else 0.
pub fn exit_code(checks: &[Check]) -> ExitCode {
    checks.iter().find_map(|c| c.code.filter(|_| c.status == Status::Fail)).unwrap_or(ExitCode::Compliant)
}

/// Well-known signs that this process runs in a container, read under `root` (`/` in production).
pub fn container_signs(root: &Path, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut signs = Vec::new();
    for (file, what) in [(".dockerenv", "/.dockerenv"), ("run/.containerenv", "/run/.containerenv")] {
        if root.join(file).exists() {
            signs.push(what.to_string());
        }
    }
    if let Ok(cgroup) = std::fs::read_to_string(root.join("proc/1/cgroup")) {
        for word in ["docker", "kubepods", "containerd", "ecs", "libpod"] {
            if cgroup.contains(word) {
                signs.push(format!("/proc/1/cgroup mentions {word}"));
                break;
            }
        }
    }
    for var in ["ECS_CONTAINER_METADATA_URI_V4", "ECS_CONTAINER_METADATA_URI", "KUBERNETES_SERVICE_HOST"] {
        if env(var).is_some_and(|v| !v.is_empty()) {
            signs.push(format!("${var} is set"));
        }
    }
    signs
}

/// How long each hop probe waits for its ICMP answer.
const PROBE_WAIT: Duration = Duration::from_millis(300);
/// doctor answers in seconds: EC2 throttling is retried (as apply does) only this long.
const EC2_PATIENCE: Duration = Duration::from_secs(10);

/// What doctor reads of this process's surroundings before it asks anything: gathered by `surroundings`,
/// given by the unit tests.
#[derive(Debug, Clone)]
pub struct Surroundings {
    /// Signs that this process runs in a container.
    pub container_signs: Vec<String>,
    /// Hops from this process to the metadata address, or why they were not counted.
    pub hops: Result<Hops, String>,
    /// Credentials in the environment (AWS_ACCESS_KEY_ID), which the SDK prefers to the role's.
    pub env_credentials: bool,
    /// AWS_EC2_METADATA_DISABLED=true: the SDKs in this environment skip IMDS.
    pub metadata_disabled: bool,
    /// The proxy that HTTP_PROXY/HTTPS_PROXY/NO_PROXY give for the metadata address, if any.
    pub metadata_proxy: Option<String>,
    /// The TTL at which IMDS's token answer reaches this process, or why it was not measured.
    pub token_ttl: Result<Option<sense::Measured>, String>,
}

pub async fn surroundings(endpoint: &str) -> Surroundings {
    let env = |v: &str| std::env::var(v).ok().filter(|v| !v.is_empty());
    Surroundings {
        container_signs: container_signs(Path::new("/"), env),
        hops: measure_hops(endpoint).await,
        env_credentials: env("AWS_ACCESS_KEY_ID").is_some(),
        metadata_disabled: env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        metadata_proxy: crate::ec2::proxy_for(endpoint),
        token_ttl: match sense::address(endpoint) {
            Some(addr) => sense::measure(addr).await,
            None => Err("the endpoint is not http:// at an IP address".into()),
        },
    }
}

/// Hops from this process to the metadata endpoint's address, or why they could not be counted.
async fn measure_hops(endpoint: &str) -> Result<Hops, String> {
    let uri: http::Uri = endpoint.parse().map_err(|_| "the endpoint is not a URL".to_string())?;
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().map_err(|_| format!("{host} is a name, not an address"))?;
    let target = std::net::SocketAddr::new(ip, 80);
    tokio::task::spawn_blocking(move || hops::measure(target, PROBE_WAIT))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("the probe failed: {e}"))
}

/// `this process is 2 hops from IMDS; the instance's hop limit must be at least 2`.
fn hops_sentence(n: u8) -> String {
    let unit = if n == 1 { "hop" } else { "hops" };
    format!("this process is {n} {unit} from IMDS; the instance's hop limit must be at least {n}")
}

/// The steps, in order; each is a small function over the same identity, credentials, EC2 and planning
/// code that apply runs, so that the two cannot drift. `ec2` makes the EC2 side once the region is known.
pub async fn diagnose<M: Probe, E: Ec2>(
    config: &Config,
    around: &Surroundings,
    imds: &M,
    ec2: impl AsyncFnOnce(&str) -> E,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let (check, imds_ok) = metadata_service(imds, around).await;
    checks.push(check);
    checks.push(where_it_runs(around));
    checks.push(hops_to_imds(around));
    checks.push(token_ttl(around));
    checks.push(environment(around));
    let identity = match identity(config, imds, imds_ok).await {
        Ok((check, identity)) => {
            checks.push(check);
            identity
        }
        Err(check) => {
            checks.push(check);
            None
        }
    };
    let credentials = if imds_ok {
        let check = instance_role(imds).await;
        let ok = check.status == Status::Ok;
        checks.push(check);
        ok || around.env_credentials
    } else {
        checks.push(Check::skip("instance role", "needs the metadata service"));
        around.env_credentials
    };
    const LATER: [&str; 3] = ["ec2:DescribeInstances", "ec2:ModifyInstanceMetadataOptions", "metadata options"];
    let Some(target) = identity else {
        checks.extend(LATER.map(|step| Check::skip(step, "needs the instance identity")));
        return checks;
    };
    if !credentials {
        checks.extend(LATER.map(|step| Check::skip(step, "needs credentials")));
        return checks;
    }
    let ec2 = ec2(&target.region).await;
    checks.extend(ec2_steps(config, around, &Patient::new(&ec2), &target).await);
    checks
}

/// Step 1. The metadata service: a TCP connection, then an IMDSv2 token (through the first read).
async fn metadata_service<M: Probe>(imds: &M, around: &Surroundings) -> (Check, bool) {
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
fn where_it_runs(around: &Surroundings) -> Check {
    if around.container_signs.is_empty() {
        Check::ok("where", "on the host (no container signs)")
    } else {
        Check::ok("where", format!("inside a container ({})", around.container_signs.join(", ")))
    }
}

/// Step 3. How many hops this process is from IMDS.
fn hops_to_imds(around: &Surroundings) -> Check {
    match &around.hops {
        Ok(hops) => Check::ok("hops to IMDS", hops_sentence(hops.count())),
        Err(why) => Check::skip("hops to IMDS", &format!("not measured: {why}")),
    }
}

/// Step 4. What in the environment keeps SDKs from the instance role, though this agent is not fooled by it.
/// Step 3b. The TTL of the token answer as it reaches this process, and from it and the hop count the
/// instance's hop limit, with no IAM at all: IMDS sends the answer with TTL = hop limit, and each hop after
/// the first takes one off.
fn token_ttl(around: &Surroundings) -> Check {
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

fn environment(around: &Surroundings) -> Check {
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
async fn identity<M: Probe>(config: &Config, imds: &M, imds_ok: bool) -> Result<(Check, Option<Target>), Check> {
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
async fn instance_role<M: Probe>(imds: &M) -> Check {
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
async fn ec2_steps<E: Ec2>(
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

fn options(
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
fn where_from(source: &Source, current: &plan::MetadataOptions, wanted: plan::HopLimit) -> String {
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

fn summary(o: &plan::MetadataOptions) -> String {
    o.describe(&[plan::Field::HopLimit, plan::Field::Endpoint, plan::Field::HttpTokens], plan::Absent::Unknown)
}

fn expires_in(at: SystemTime) -> String {
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!("expire in {} min", left.as_secs() / 60),
        Err(_) => "already expired".into(),
    }
}

/// One line per step, the hint under a failure or warning.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        let mark = match c.status {
            Status::Ok => "[ok]  ",
            Status::Warn => "[warn]",
            Status::Fail => "[FAIL]",
            Status::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {:<34} {}\n", c.step, c.detail));
        if let Some(hint) = &c.hint {
            if c.status != Status::Ok {
                out.push_str(&format!("       {:<34} -> {hint}\n", ""));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_signs_are_found_under_a_root() {
        let root = std::env::temp_dir().join(format!("ihl-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc/1")).unwrap();
        assert!(container_signs(&root, |_| None).is_empty());
        std::fs::write(root.join(".dockerenv"), "").unwrap();
        std::fs::write(root.join("proc/1/cgroup"), "0::/system.slice/docker-0123.scope\n").unwrap();
        let signs = container_signs(&root, |v| (v == "ECS_CONTAINER_METADATA_URI_V4").then(|| "http://x".into()));
        assert_eq!(signs, ["/.dockerenv", "/proc/1/cgroup mentions docker", "$ECS_CONTAINER_METADATA_URI_V4 is set"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    use crate::config::Mode;
    use crate::fakes::{FakeImds, Scripted, config, options};
    use crate::plan::{HopLimit, MetadataOptions, State};

    fn around(hops: Result<Hops, String>) -> Surroundings {
        Surroundings {
            container_signs: vec!["/.dockerenv".into()],
            hops,
            env_credentials: false,
            metadata_disabled: false,
            metadata_proxy: None,
            token_ttl: Ok(Some(sense::Measured { ttl: 2, enforced: true })),
        }
    }

    async fn diagnose_with(imds: &FakeImds, ec2: Scripted, around: &Surroundings) -> (Vec<Check>, Scripted) {
        let ec2 = std::rc::Rc::new(ec2);
        let shared = ec2.clone();
        let checks = diagnose(&config(Mode::Check), around, imds, async |_: &str| Shared(shared)).await;
        (checks, std::rc::Rc::try_unwrap(ec2).ok().expect("doctor let go of its EC2 side"))
    }

    /// The scripted EC2 behind an Rc, so a test can look at what doctor sent it.
    struct Shared(std::rc::Rc<Scripted>);
    impl Ec2 for Shared {
        async fn describe_instance(&self, id: &str) -> crate::error::Result<crate::ec2::Described> {
            self.0.describe_instance(id).await
        }
        async fn modify(&self, id: &str, c: &Change, dry: bool) -> crate::error::Result<crate::ec2::Modified> {
            self.0.modify(id, c, dry).await
        }
    }

    fn step<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks.iter().find(|c| c.step == name).unwrap_or_else(|| panic!("no {name} in {checks:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_healthy_instance_passes_every_step_and_only_dry_runs() {
        let (checks, ec2) = diagnose_with(
            &FakeImds::default(),
            Scripted::new(vec![options(2, State::Applied)]),
            &around(Ok(Hops::Reached(1))),
        )
        .await;
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{}", render(&checks));
        assert_eq!(exit_code(&checks), ExitCode::Compliant);
        assert!(ec2.modifies.borrow().iter().all(|(_, dry)| *dry));
    }

    #[test]
    fn the_token_answers_ttl_and_the_hops_give_the_hop_limit() {
        let at = |ttl, enforced, hops| {
            let around = Surroundings {
                token_ttl: Ok(Some(sense::Measured { ttl, enforced })),
                ..around(Ok(Hops::Reached(hops)))
            };
            token_ttl(&around)
        };
        let c = at(1, true, 2);
        assert_eq!(c.status, Status::Ok);
        assert!(c.detail.contains("TTL 1; 2 hops from IMDS, so the instance's hop limit is 2"), "{}", c.detail);
        assert!(at(3, true, 1).detail.contains("hop limit is 3"));
        assert_eq!(at(64, true, 1).status, Status::Warn, "an answer at 64 speaks for something else");
        assert_eq!(at(2, false, 1).status, Status::Warn, "a bound the kernel did not show it enforces");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_token_names_the_measured_hops_in_the_advice() {
        let imds = FakeImds {
            instance_id: || Err(Error::TokenSilent { endpoint: "http://169.254.169.254".into() }),
            ..FakeImds::default()
        };
        let (checks, _) =
            diagnose_with(&imds, Scripted::new(vec![options(1, State::Applied)]), &around(Ok(Hops::PastRouters(2))))
                .await;
        let metadata = step(&checks, "metadata service");
        assert_eq!(metadata.status, Status::Fail);
        assert!(metadata.hint.as_deref().unwrap().contains("raise the hop limit to 3"), "{}", render(&checks));
        assert_eq!(step(&checks, "hops to IMDS").detail, hops_sentence(3));
        assert_eq!(step(&checks, "identity").status, Status::Skip);
        assert_eq!(exit_code(&checks), ExitCode::MetadataUnreachable);
    }

    #[tokio::test(start_paused = true)]
    async fn no_role_fails_and_skips_what_needs_credentials() {
        let imds = FakeImds { has_role: false, ..FakeImds::default() };
        let (checks, ec2) =
            diagnose_with(&imds, Scripted::new(vec![options(1, State::Applied)]), &around(Ok(Hops::Reached(1)))).await;
        assert_eq!(step(&checks, "instance role").status, Status::Fail);
        assert_eq!(step(&checks, "ec2:DescribeInstances").status, Status::Skip);
        assert_eq!(exit_code(&checks), ExitCode::NotAuthorized);
        assert!(ec2.modifies.borrow().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_role_credentials_fail_the_role_step() {
        let imds = FakeImds { expiration: Some(SystemTime::now() - Duration::from_secs(600)), ..FakeImds::default() };
        let (checks, _) =
            diagnose_with(&imds, Scripted::new(vec![options(2, State::Applied)]), &around(Ok(Hops::Reached(1)))).await;
        let role = step(&checks, "instance role");
        assert!(role.status == Status::Fail && role.detail.contains("expired at"), "{}", render(&checks));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unauthorized_modify_fails_with_the_policy_hint() {
        let mut ec2 = Scripted::new(vec![options(1, State::Applied)]);
        ec2.refuse_modify = Some(|| Error::NotAuthorized {
            action: "ModifyInstanceMetadataOptions",
            instance_id: "i-12345678".into(),
            encoded: None,
            refusal: None,
            hint: crate::ec2::failures::POLICY_HINT,
        });
        let (checks, _) = diagnose_with(&FakeImds::default(), ec2, &around(Ok(Hops::Reached(1)))).await;
        let modify = step(&checks, "ec2:ModifyInstanceMetadataOptions");
        assert_eq!(modify.status, Status::Fail);
        // The refusal's own message names the policy; no hint under it repeats it (issue 34).
        assert!(modify.detail.contains("iam-policy.json"), "{}", modify.detail);
        assert_eq!(modify.hint, None);
        assert_eq!(exit_code(&checks), ExitCode::NotAuthorized);
    }

    /// Not compliant: where the instance came from, by its tags, and the fix that makes the hop limit stick
    /// there (issue 36); nothing known: the region's default.
    #[tokio::test(start_paused = true)]
    async fn a_non_compliant_instance_is_told_where_it_came_from_and_the_fix() {
        let mut ec2 = Scripted::new(vec![options(1, State::Applied)]);
        ec2.source = Source::from_tags([("karpenter.k8s.aws/ec2nodeclass", "default"), ("eks:cluster-name", "prod")]);
        let (checks, _) = diagnose_with(&FakeImds::default(), ec2, &around(Ok(Hops::Reached(1)))).await;
        let hint = step(&checks, "metadata options").hint.clone().unwrap();
        assert!(hint.contains("This instance came from Karpenter EC2NodeClass default (cluster prod)"), "{hint}");
        assert!(hint.contains("will likely have hop limit 1 too"), "{hint}");
        assert!(hint.contains("httpPutResponseHopLimit: 2 on EC2NodeClass default of cluster prod"), "{hint}");
        let (checks, _) = diagnose_with(
            &FakeImds::default(),
            Scripted::new(vec![options(1, State::Applied)]),
            &around(Ok(Hops::Reached(1))),
        )
        .await;
        let hint = step(&checks, "metadata options").hint.clone().unwrap();
        assert!(hint.contains("Its tags do not say where it came from: `imds-hop-limit defaults apply"), "{hint}");
    }

    /// The drift the review found: EC2 leaves HttpEndpoint out; apply rightly sends nothing for it (IMDS just
    /// answered), and doctor, planning as apply plans, does not claim it would set it.
    #[tokio::test(start_paused = true)]
    async fn an_unreported_endpoint_is_planned_as_apply_plans_it() {
        let sparse = MetadataOptions { http_endpoint: None, ..options(2, State::Applied) };
        let (checks, ec2) =
            diagnose_with(&FakeImds::default(), Scripted::new(vec![sparse]), &around(Ok(Hops::Reached(1)))).await;
        let options = step(&checks, "metadata options");
        assert_eq!(options.status, Status::Ok, "{}", render(&checks));
        assert!(!options.detail.contains("would set"), "{}", render(&checks));
        let probes = ec2.modifies.borrow();
        assert_eq!(probes[0].0, Change { hop_limit: HopLimit::new(2), ..Change::default() }, "what apply would send");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hop_limit_below_the_measured_hops_names_the_hop_limit_to_set() {
        let (checks, _) = diagnose_with(
            &FakeImds::default(),
            Scripted::new(vec![options(2, State::Applied)]),
            &around(Ok(Hops::Reached(3))),
        )
        .await;
        let options = step(&checks, "metadata options");
        assert_eq!(options.status, Status::Warn);
        assert!(options.hint.as_deref().unwrap().contains("imds-hop-limit --hop-limit 3"), "{}", render(&checks));
    }

    #[tokio::test(start_paused = true)]
    async fn a_proxy_or_disabled_metadata_in_the_environment_is_a_warning() {
        let mut a = around(Ok(Hops::Reached(1)));
        a.metadata_proxy = Some("http://proxy:3128".into());
        let (checks, _) =
            diagnose_with(&FakeImds::default(), Scripted::new(vec![options(2, State::Applied)]), &a).await;
        let env = step(&checks, "environment");
        assert!(env.status == Status::Warn && env.hint.as_deref().unwrap().contains("NO_PROXY"));
        a.metadata_proxy = None;
        a.metadata_disabled = true;
        let (checks, _) =
            diagnose_with(&FakeImds::default(), Scripted::new(vec![options(2, State::Applied)]), &a).await;
        assert!(step(&checks, "environment").detail.contains("AWS_EC2_METADATA_DISABLED=true"));
        assert_eq!(exit_code(&checks), ExitCode::Compliant, "a warning does not fail");
    }

    #[test]
    fn rendering_is_golden() {
        let silent = Error::TokenSilent { endpoint: "http://169.254.169.254".into() };
        let checks = vec![
            Check::fail("metadata service", &silent, Some(format!("{}: raise the hop limit to 3", hops_sentence(3)))),
            Check::ok("where", "inside a container (/.dockerenv)"),
            Check::ok("hops to IMDS", hops_sentence(3)),
            Check::skip("identity", "needs the metadata service, or --instance-id and --region"),
        ];
        let expected = "\
[FAIL] metadata service                   no IMDSv2 token answer from http://169.254.169.254: the connection opened but the answer never came. This is the hop-limit symptom itself: this process is more hops from IMDS than the instance's hop limit allows (typically a container behind a hop limit of 1). Run imds-hop-limit on the host, not in the container
                                          -> this process is 3 hops from IMDS; the instance's hop limit must be at least 3: raise the hop limit to 3
[ok]   where                              inside a container (/.dockerenv)
[ok]   hops to IMDS                       this process is 3 hops from IMDS; the instance's hop limit must be at least 3
[skip] identity                           skipped: needs the metadata service, or --instance-id and --region
";
        assert_eq!(render(&checks), expected);
        assert_eq!(hops_sentence(1), "this process is 1 hop from IMDS; the instance's hop limit must be at least 1");
    }

    #[test]
    fn the_first_failure_decides_the_exit_code_and_warnings_do_not() {
        let unreachable = Error::MetadataUnreachable { endpoint: "e".into(), detail: "d".into() };
        let checks = vec![
            Check::ok("a", "fine"),
            Check::warn("b", "not compliant", "run it"),
            Check::fail("c", &Error::NoInstanceRole, None),
            Check::fail("d", &unreachable, None),
            Check::skip("e", "needs c"),
        ];
        assert_eq!(exit_code(&checks), ExitCode::NotAuthorized);
        assert_eq!(exit_code(&checks[..2]), ExitCode::Compliant);
        let text = render(&checks);
        assert!(text.contains("[FAIL] c") && text.contains("[skip] e") && text.contains("-> run it"), "{text}");
    }
}
