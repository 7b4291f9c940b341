//! `cargo run --example simulated-instance -- [--hop-limit N] [--pending-ms MS] [--imds ADDR] [--also-imds ADDR]
//!     [--ec2 ADDR] [--ttl-is-hop-limit] [--no-role] [--static-key AKID] [--instance-id ID]`
//!
//! Runs the simulated EC2 instance on loopback until stdin closes or it is killed. Its first line on
//! stdout is the environment that points an agent at it, as shell `export` lines. Commands on stdin, for
//! benchmarks: `requests` (the log, one line each, then `end`), `reset` (first state, empty log),
//! `applied-at` (ms since start when the last change turned applied, or `none`), `now` (ms since start).

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
                scenario.pending_for =
                    Duration::from_millis(value().parse().unwrap_or_else(|_| usage("--pending-ms MS")))
            }
            "--imds" => imds = value(),
            "--ec2" => ec2 = value(),
            "--ttl-is-hop-limit" => scenario.ttl_is_hop_limit = true,
            "--also-imds" => {
                scenario.extra_imds.push(value().parse().unwrap_or_else(|_| usage("--also-imds ADDR:PORT")))
            }
            "--no-role" => scenario.role_attached = false,
            "--instance-id" => scenario.instance_id = value(),
            "--static-key" => scenario.static_keys.push(value()),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let sim = Simulator::start_on(
        imds.parse().unwrap_or_else(|_| usage("--imds ADDR:PORT")),
        ec2.parse().unwrap_or_else(|_| usage("--ec2 ADDR:PORT")),
        scenario,
    );
    let exports: Vec<String> = sim.env().iter().map(|(k, v)| format!("export {k}={v}")).collect();
    println!("{}", exports.join("; "));
    std::io::stdout().flush().unwrap();
    // Serve until stdin closes (the parent went away) or a signal ends the process.
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("requests") => {
                for r in sim.requests() {
                    println!("{} {} {} {} {}", r.at_ms, r.server, r.method, r.path, r.action);
                }
                println!("end");
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
