//! The deployment kinds (issue 22), offline: the Kubernetes manifests pass `kubernetes-validate --strict`
//! (PyPI; it ships the schemas) for two Kubernetes versions, and the DaemonSet's own args, env and readiness
//! command, read from the manifest, run against the simulator; the ECS task and service definitions validate
//! against the ECS API model that botocore ships; the Bottlerocket settings parse and name the image and mode.
//! Every manifest names the image of this version.

use crate::simulator::{Options, Simulator};
use crate::support::{ec2_calls, scenario, version};
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::Duration;

fn python(code: &str, args: &[&str]) -> String {
    let out = Command::new("python3").arg("-c").arg(code).args(args).output().expect("python3");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn yaml(path: &str) -> Vec<Value> {
    let text =
        python("import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))", &[path]);
    serde_json::from_str(&text).unwrap()
}

fn image() -> String {
    format!("ghcr.io/imds-hop-limit/imds-hop-limit:{}", version())
}

#[test]
fn the_kubernetes_manifests_validate_strictly_for_two_versions() {
    for k8s in ["1.30.0", "1.33.0"] {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "--strict", "--quiet", "-k", k8s])
            .args(["deploy/kubernetes/daemonset.yaml", "deploy/kubernetes/serviceaccount.yaml"])
            .output()
            .expect("kubernetes-validate (.ci/run installs it)");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && !text.contains("ERROR"), "{k8s}: {text}");
    }
    let kustomization = &yaml("deploy/kubernetes/kustomization.yaml")[0];
    assert_eq!(kustomization["resources"], serde_json::json!(["serviceaccount.yaml", "daemonset.yaml"]));
    assert_eq!(kustomization["images"][0]["newTag"], version());
    let ds = &yaml("deploy/kubernetes/daemonset.yaml")[0];
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["tolerations"][0]["operator"], "Exists", "every node, tainted ones too");
    // No pod where there is no EC2 instance of yours (Fargate), no IMDS (EKS Hybrid Nodes, on premises), or
    // options that cannot be changed (EKS Auto Mode): the EKS user guide's compute-type values, as
    // aws-vpc-cni's own DaemonSet excludes them (issue 27: hybrid nodes got a pod that was never ready).
    let terms = &pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    let expression = &terms[0]["matchExpressions"][0];
    assert_eq!(
        (&expression["key"], &expression["operator"]),
        (&"eks.amazonaws.com/compute-type".into(), &"NotIn".into())
    );
    let mut excluded: Vec<&str> = expression["values"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    excluded.sort();
    assert_eq!(excluded, ["auto", "fargate", "hybrid"]);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], image());
    let sc = &c["securityContext"];
    assert_eq!(
        (&sc["readOnlyRootFilesystem"], &sc["allowPrivilegeEscalation"]),
        (&Value::Bool(true), &Value::Bool(false))
    );
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
}

/// The DaemonSet's container as the kubelet would start it: its args and env from the manifest, run against
/// the simulator in the host's network (here, the test's loopback); then its readiness command.
#[test]
fn the_daemonsets_own_command_runs_and_its_readiness_probe_passes() {
    let ds = &yaml("deploy/kubernetes/daemonset.yaml")[0];
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    let sim = Simulator::start(scenario(|s| {
        s.ttl_is_hop_limit = true;
        s.options = Options { hop_limit: Some(1), ..Options::default() };
    }));
    let container = |args: &[String]| {
        let mut cmd = crate::support::process(&sim, crate::support::bin());
        cmd.envs(env.clone()).args(args);
        cmd
    };
    let mut child = container(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let log = crate::support::follow(&mut child);
    // The node fixed, and the change seen in effect (said once), before the kubelet's SIGTERM.
    log.until("changed (hop limit 1 -> 2)", 1, Duration::from_secs(30));
    assert_eq!(sim.effective_hop_limit(), 2, "the DaemonSet's command fixed the node");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    let text = log.finish();
    assert_eq!(status.code(), Some(0), "{text}");

    let probe: Vec<String> =
        c["readinessProbe"]["exec"]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()).collect();
    assert_eq!(probe[0], "/imds-hop-limit", "the image's binary");
    sim.reset_log();
    let out = container(&probe[1..]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "ready: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(ec2_calls(&sim), 0, "the readiness probe costs no EC2 call where IMDS proves it");
}

#[test]
fn the_ecs_definitions_validate_against_botocores_model() {
    let report = python(
        "import json, sys, botocore.session\n\
         from botocore.validate import ParamValidator\n\
         m = botocore.session.get_session().get_service_model('ecs')\n\
         for op, f in [('RegisterTaskDefinition', sys.argv[1]), ('CreateService', sys.argv[2])]:\n\
         \x20   r = ParamValidator().validate(json.load(open(f)), m.operation_model(op).input_shape)\n\
         \x20   print(op, 'ok' if not r.has_errors() else r.generate_report())\n",
        &["deploy/ecs/task-definition.json", "deploy/ecs/service.json"],
    );
    assert_eq!(report, "RegisterTaskDefinition ok\nCreateService ok\n");
    let task: Value =
        serde_json::from_str(&std::fs::read_to_string("deploy/ecs/task-definition.json").unwrap()).unwrap();
    assert_eq!(task["networkMode"], "host");
    assert_eq!(task["requiresCompatibilities"], serde_json::json!(["EC2"]));
    let c = &task["containerDefinitions"][0];
    assert_eq!(c["image"], image());
    assert_eq!(c["command"][0], "watch");
    let service: Value = serde_json::from_str(&std::fs::read_to_string("deploy/ecs/service.json").unwrap()).unwrap();
    assert_eq!(service["schedulingStrategy"], "DAEMON");
}

#[test]
fn the_bottlerocket_settings_parse_and_name_the_image_once() {
    let text = python(
        "import json, sys, tomllib; print(json.dumps(tomllib.load(open(sys.argv[1], 'rb'))))",
        &["deploy/bottlerocket/user-data.toml"],
    );
    let settings: Value = serde_json::from_str(&text).unwrap();
    let c = &settings["settings"]["bootstrap-containers"]["imds-hop-limit"];
    assert_eq!(c["source"], image());
    assert_eq!(c["mode"], "once");
    assert!(c["essential"].is_boolean());
}
