//! `imds-hop-limit doctor`: explains, step by step, why this instance or this container gets no
//! credentials, and changes nothing. A step that cannot run because an earlier one failed is skipped.

//!
//! Three layers, a file each: what surrounds the process (surroundings.rs), the steps (steps.rs), and the
//! check model with its renderer (check.rs); here the run and the order of the steps.

mod check;
mod steps;
mod surroundings;

use crate::cli::Output;
use crate::config::Config;
use crate::ec2::{Ec2, Ec2Api};
use crate::error::{Error, Result};
use crate::exit::ExitCode;
use crate::imds::{Imds, Probe};
use crate::process::{self, Progress};
use crate::retry::Patient;
pub use check::{Check, Status, exit_code, render};
use steps::*;
pub use surroundings::{Surroundings, surroundings};

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

#[cfg(test)]
mod tests {
    use super::surroundings::{container_signs, hops_sentence};
    use super::*;
    use crate::hops::Hops;
    use crate::plan::Change;
    use crate::sense;
    use crate::source::Source;
    use std::time::{Duration, SystemTime};

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

    use crate::fakes::{FakeImds, Scripted, config, options};
    use crate::plan::Intent;
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
        let checks = diagnose(&config(Intent::Check), around, imds, async |_: &str| Shared(shared)).await;
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
