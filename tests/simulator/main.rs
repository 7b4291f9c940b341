//! `cargo run --example simulated-instance -- [--hop-limit N] [--pending-ms MS] [--imds ADDR] [--also-imds ADDR]
//!     [--ec2 ADDR] [--ttl-is-hop-limit] [--no-role] [--instance-id ID] [--more-instances N]
//!     [--buckets DESCRIBE_BURST,DESCRIBE_RATE,MODIFY_BURST,MODIFY_RATE | --documented-buckets] [--time-scale F]
//!     [--tls CERT.pem KEY.pem] [--fleet N] [--fleet-in REGION,...:N] [--demo-fleet] [--organization N]`
//!
//! Runs the simulated EC2 account on loopback until stdin closes or it is killed. Its first line on
//! `--organization N` makes the account an organization's management account with N member accounts
//! (`20000000000K`, each holding the same instances, with budgets of their own). `--fleet N` adds N instances in us-west-2 (`simulator::fleet_instance`): the even-numbered ones tagged
//! team=web with hop limit 1, the odd ones untagged with hop limit 2. Its first line on
//! stdout is the environment that points an agent at it, as shell `export` lines (static credentials
//! included, for runs that give --instance-id and --region). Commands on stdin, for benchmarks: `requests`
//! (the log, one line each: ms server method path action status instance token-ttl, then `end`), `reset` (first
//! state, empty log), `reset-log` (empty log, same state), `applied-at` (ms since start when the agent's instance's last change turned applied,
//! or `none`), `all-applied-at HOP` (when the last instance of the account turned applied with that hop
//! limit, or `none`), `applied-count HOP` (how many instances are applied with that hop limit), `ids` (every
//! instance id, then `end`), `now` (ms since start).

#[path = "mod.rs"]
mod simulator;

use simulator::{Scenario, Simulator};
use std::io::{BufRead, Write};
use std::time::Duration;

fn main() {
    let mut scenario = Scenario::default();
    let mut imds = "127.0.0.1:0".to_string();
    let mut ec2 = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--hop-limit" => {
                scenario.options.hop_limit = Some(value().parse().unwrap_or_else(|_| usage("--hop-limit N")))
            }
            "--pending-ms" => {
                scenario.applies = simulator::Applies::After(Duration::from_millis(
                    value().parse().unwrap_or_else(|_| usage("--pending-ms MS")),
                ))
            }
            "--imds" => imds = value(),
            "--ec2" => ec2 = value(),
            "--ttl-is-hop-limit" => scenario.ttl_is_hop_limit = true,
            "--imds-per-instance" => scenario.imds_per_instance = true,
            "--also-imds" => {
                scenario.extra_imds.push(value().parse().unwrap_or_else(|_| usage("--also-imds ADDR:PORT")))
            }
            "--no-role" => scenario.role_attached = false,
            "--instance-id" => scenario.instance_id = value(),
            "--more-instances" => {
                scenario.more_instances = value().parse().unwrap_or_else(|_| usage("--more-instances N"))
            }
            "--fleet" => {
                let n: usize = value().parse().unwrap_or_else(|_| usage("--fleet N"));
                scenario.instances.extend((0..n).map(simulator::fleet_instance));
            }
            "--fleet-in" => {
                // N instances in each of these regions (REGION,REGION,...:N), numbered on from --fleet's.
                let spec = value();
                let (regions, n) = spec.rsplit_once(':').unwrap_or_else(|| usage("--fleet-in REGION,...:N"));
                let n: usize = n.parse().unwrap_or_else(|_| usage("--fleet-in REGION,...:N"));
                for (at, region) in regions.split(',').enumerate() {
                    let region: &'static str = Box::leak(region.to_string().into_boxed_str());
                    let base = scenario.instances.len() + at;
                    scenario.instances.extend((0..n).map(|k| simulator::InstanceSpec {
                        region,
                        ..simulator::fleet_instance(base * 1_000_000 + k)
                    }));
                }
            }
            "--demo-fleet" => scenario.instances.extend(simulator::demo_fleet()),
            "--templates" => {
                // N launch templates in the scenario's region, every other one at hop limit 1 (HttpTokens required).
                let n: usize = value().parse().unwrap_or_else(|_| usage("--templates N"));
                scenario.templates.extend((0..n).map(simulator::bench_template));
            }
            "--organization" => {
                let n = value().parse().unwrap_or_else(|_| usage("--organization N"));
                scenario.organization = Some(simulator::members(n));
            }
            "--tls" => {
                let cert = value();
                scenario.ec2_tls = Some((cert, value()));
            }
            "--documented-buckets" => scenario.buckets = Some(simulator::Buckets::DOCUMENTED),
            "--buckets" => {
                let n: Vec<f64> = value().split(',').filter_map(|v| v.parse().ok()).collect();
                let [db, dr, mb, mr] = n[..] else { usage("--buckets DB,DR,MB,MR") };
                let scale = scenario.buckets.map_or(1.0, |b| b.time_scale);
                scenario.buckets = Some(simulator::Buckets {
                    describe: (db, dr),
                    modify: (mb, mr),
                    defaults: (2.0, 2.0),
                    time_scale: scale,
                });
            }
            "--time-scale" => {
                let scale = value().parse().unwrap_or_else(|_| usage("--time-scale F"));
                let b = scenario.buckets.get_or_insert(simulator::Buckets::DOCUMENTED);
                b.time_scale = scale;
            }
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let sim = Simulator::start_on(
        imds.parse().unwrap_or_else(|_| usage("--imds ADDR:PORT")),
        ec2.parse().unwrap_or_else(|_| usage("--ec2 ADDR:PORT")),
        scenario,
    );
    let mut exports: Vec<String> = sim.env().iter().map(|(k, v)| format!("export {k}={v}")).collect();
    exports.push(format!("export SIM_STATIC_KEY={}", simulator::STATIC_KEY));
    exports.push(format!("export SIM_STATIC_SECRET={}", simulator::STATIC_SECRET));
    println!("{}", exports.join("; "));
    std::io::stdout().flush().unwrap();
    // Serve until stdin closes (the parent went away) or a signal ends the process.
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("requests") => {
                for r in sim.requests() {
                    let action = if r.action.is_empty() { "-" } else { &r.action };
                    let instance = r.instance().unwrap_or("-");
                    let ttl = r.token_ttl.map_or_else(|| "-".to_string(), |t| t.to_string());
                    println!("{} {} {} {} {action} {} {instance} {ttl}", r.at_ms, r.server, r.method, r.path, r.status);
                }
                println!("end");
            }
            Ok(line) if line.starts_with("all-applied-at ") => {
                let hop = line["all-applied-at ".len()..].trim().parse().unwrap_or(2);
                println!("{}", sim.all_applied_at_ms(hop).map_or("none".into(), |v| v.to_string()));
            }
            Ok(line) if line.starts_with("applied-count ") => {
                let hop = line["applied-count ".len()..].trim().parse().unwrap_or(2);
                println!("{}", sim.applied_count(hop));
            }
            Ok("imds-urls") => {
                for (id, url) in &sim.imds_urls {
                    println!("{id} {url}");
                }
                println!("end");
            }
            Ok(line) if line.starts_with("set-hop-limit ") => {
                sim.set_hop_limit(line["set-hop-limit ".len()..].trim().parse().unwrap_or(1));
                println!("ok");
            }
            Ok("ids") => {
                for id in sim.instance_ids() {
                    println!("{id}");
                }
                println!("end");
            }
            Ok("reset-log") => {
                sim.reset_log();
                println!("ok");
            }
            Ok("reset") => {
                sim.reset();
                println!("ok");
            }
            Ok("applied-at") => println!("{}", sim.applied_at_ms().map_or("none".into(), |v| v.to_string())),
            Ok("now") => println!("{}", sim.elapsed_ms()),
            Ok(_) => {}
            Err(_) => break,
        }
        std::io::stdout().flush().unwrap();
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("simulated-instance: {msg}");
    std::process::exit(2);
}
