//! The command line, and the only place that knows flag names. Every flag that a unit file or an
//! EnvironmentFile may want to set also reads an `IMDS_HOP_LIMIT_*` variable.

use crate::plan::{HttpTokens, Toggle};
use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "imds-hop-limit",
    version,
    about = "Let the containers on an EC2 instance reach IMDSv2: set the instance's metadata hop limit and verify it applied",
    long_about = "Reads the instance id and region through IMDSv2, reads the instance's metadata options from EC2, \
                  and when needed calls ModifyInstanceMetadataOptions (hop limit at least 2, endpoint enabled), then \
                  waits until EC2 reports the change applied. A second run changes nothing.",
    after_help = "Exit codes: 0 compliant, 1 unexpected error, 2 usage, 3 not compliant (check, --dry-run), \
                  4 metadata service unreachable, 5 not authorized or no credentials, 6 gave up waiting for \
                  `applied`, 7 instance not found, 8 EC2 kept throttling (or failing) until the deadline, \
                  130/143 interrupted by SIGINT/SIGTERM."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub options: Options,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Change the options when needed and wait until EC2 applies them (the default).
    Apply,
    /// Read and decide only: exit 0 when compliant, 3 when not. Changes nothing.
    Check,
    /// Explain, step by step, why this instance or container gets no credentials. Changes nothing.
    Doctor,
    /// Apply, then keep the instance compliant: look again every interval (by IMDS itself, at no API cost)
    /// and apply again when the hop limit drifted lower. Ends with exit 0 on SIGTERM or SIGINT.
    #[command(after_help = "Logs one line per change or failure, not per look. Failures back off (up to 15 minutes) \
                      without exiting. Where IMDS cannot prove the hop limit, each look is one DescribeInstances, \
                      taken every --ec2-interval instead.")]
    Watch(WatchArgs),
    /// Every matching instance of one or more regions, from a laptop or CI: no IMDS needed.
    #[command(
        long_about = "Selects instances with DescribeInstances (tags ANDed, instance ids, state running or stopped), \
                      decides per instance with the same rules as the agent, sends one ModifyInstanceMetadataOptions \
                      per non-compliant instance, paced to EC2's budget for it, and verifies `applied` in batches. \
                      Credentials and the default region come from the default AWS chain (AWS_PROFILE, the \
                      environment, SSO, ...). A stopped instance is changed too; EC2 applies it when it starts.",
        after_help = "Exit codes: 0 every selected instance compliant at the end, 3 `check` or --dry-run found \
                      instances to change, otherwise the most severe failure: 5 not authorized or no credentials, \
                      8 EC2 kept throttling, 6 gave up waiting for `applied`, 7 an --instance-id not found, \
                      1 unexpected; 2 usage."
    )]
    Fleet(FleetArgs),
    /// The account's metadata defaults for instances launched from now on (per region).
    #[command(after_help = "Exit codes: 0 the defaults are as wanted (or were set), 3 `check` found them different, \
                      9 an AWS Organizations declarative policy manages them (nothing changed), 5 not authorized, \
                      8 EC2 kept throttling, 1 unexpected, 2 usage.")]
    Defaults(DefaultsArgs),
}

/// `check` reads and decides; `apply` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Act {
    Check,
    Apply,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct FleetArgs {
    /// check: read and decide, exit 3 when any instance needs a change; apply: change and verify.
    pub act: Act,

    /// Every region enabled for the account (DescribeRegions), instead of --region or AWS_REGION.
    #[arg(long)]
    pub all_regions: bool,

    /// Only instances with this tag (KEY=VALUE, or KEY for any value); several are ANDed, as EC2 filters are.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// ModifyInstanceMetadataOptions calls a second, per region: EC2's documented refill is 5 (raise it
    /// only for an account whose limit AWS raised).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 5.0)]
    pub modify_rate: f64,

    /// How many calls may go at once before the rate applies: EC2's documented bucket holds 100, shared
    /// with everything else the account runs.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub modify_burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WatchArgs {
    /// How often to look through IMDS itself (two token requests to IMDS, no EC2 call).
    #[arg(long, value_name = "DURATION", default_value = "60s", env = "IMDS_HOP_LIMIT_INTERVAL")]
    pub interval: String,

    /// How often to look where IMDS cannot prove the hop limit: each look is one DescribeInstances from the
    /// account's shared budget (1,000 nodes at 30m: about one call every 2 s).
    #[arg(long, value_name = "DURATION", default_value = "30m", env = "IMDS_HOP_LIMIT_EC2_INTERVAL")]
    pub ec2_interval: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct DefaultsArgs {
    /// check: read and decide, exit 3 when the defaults differ; apply: change them and read them back.
    pub act: Act,

    /// Every region enabled for the account (DescribeRegions), instead of --region or AWS_REGION.
    #[arg(long)]
    pub all_regions: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// How apply and check know the instance's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSource {
    /// IMDS itself where it can prove the hop limit (no EC2 call when compliant), EC2 otherwise.
    Imds,
    /// Always EC2 (DescribeInstances), as before sensing.
    Ec2,
}

#[derive(Debug, Args)]
pub struct Options {
    /// Wanted HttpPutResponseHopLimit: at least this (1..=64).
    #[arg(long, global = true, value_name = "N", default_value_t = 2, env = "IMDS_HOP_LIMIT",
          value_parser = clap::value_parser!(i64).range(1..=64))]
    pub hop_limit: i64,

    /// Set the hop limit to exactly N, lowering a higher one.
    #[arg(long, global = true, env = "IMDS_HOP_LIMIT_EXACT", value_parser = BoolishValueParser::new())]
    pub exact: bool,

    /// Also set HttpTokens. Left alone when not given: the tool never re-enables IMDSv1 on its own.
    #[arg(long, global = true, value_name = "MODE", env = "IMDS_HOP_LIMIT_HTTP_TOKENS")]
    pub http_tokens: Option<HttpTokens>,

    /// Also set HttpProtocolIpv6 (the fd00:ec2::254 endpoint).
    #[arg(long, global = true, value_name = "STATE", env = "IMDS_HOP_LIMIT_IPV6_ENDPOINT")]
    pub ipv6_endpoint: Option<Toggle>,

    /// Also set InstanceMetadataTags.
    #[arg(long, global = true, value_name = "STATE", env = "IMDS_HOP_LIMIT_INSTANCE_TAGS")]
    pub instance_tags: Option<Toggle>,

    /// The instance to change, instead of this instance's own id from IMDS (fleet: several, or comma-separated).
    #[arg(long, global = true, value_name = "ID", value_delimiter = ',')]
    pub instance_id: Vec<String>,

    /// The instance's region, instead of the one IMDS reports (fleet and defaults: several).
    #[arg(long, global = true, value_name = "REGION", env = "AWS_REGION", value_delimiter = ',')]
    pub region: Vec<String>,

    /// Ask EC2 (DryRun=true) whether the change would be authorized; change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,

    /// How apply and check know the options: `imds` senses the hop limit from IMDS's own token answer where it
    /// can prove it (a compliant instance costs no EC2 call), else asks EC2; `ec2` always asks EC2.
    #[arg(long, global = true, value_name = "SOURCE", default_value = "imds", env = "IMDS_HOP_LIMIT_EVIDENCE")]
    pub evidence: EvidenceSource,

    /// Return once EC2 accepted the change, without waiting for `applied`.
    #[arg(long, global = true, env = "IMDS_HOP_LIMIT_NO_WAIT", value_parser = BoolishValueParser::new())]
    pub no_wait: bool,

    /// How long to wait for EC2 to report the change applied (e.g. 120, 90s, 2m).
    #[arg(long, global = true, value_name = "DURATION", default_value = "120s", env = "IMDS_HOP_LIMIT_WAIT_TIMEOUT")]
    pub wait_timeout: String,

    /// How long to retry a metadata service that refuses connections or is throttling (at boot); bounds
    /// how long the unit can hold docker.service back when IMDS is missing.
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", env = "IMDS_HOP_LIMIT_IMDS_TIMEOUT")]
    pub imds_timeout: String,

    /// Deadline for the whole run, metadata retries at boot included (e.g. 180, 3m) [default: 180s; fleet and
    /// defaults: none].
    #[arg(long, global = true, value_name = "DURATION", env = "IMDS_HOP_LIMIT_TIMEOUT")]
    pub timeout: Option<String>,

    /// Print the result as one JSON object on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text, env = "IMDS_HOP_LIMIT_OUTPUT")]
    pub output: Output,

    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log detail on stderr (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

impl Cli {
    /// Parses the command line. A bad value that came from an `IMDS_HOP_LIMIT_*` (or `AWS_REGION`) variable,
    /// as an EnvironmentFile sets them, is reported with the variable's name, not only the flag's.
    /// On `Err`, the text to print and whether it is `--help` or `--version` (stdout, exit 0) rather than a
    /// usage error (stderr, exit 2).
    pub fn parse_or_explain(args: Vec<std::ffi::OsString>) -> Result<Cli, (String, bool)> {
        let cli = Cli::try_parse_from(&args).map_err(|err| (explain(&err, &args), !err.use_stderr()))?;
        match unused_flag(&args) {
            Some(message) => Err((message, false)),
            None => Ok(cli),
        }
    }
}

/// The flags each command does not use (the options are shared, so clap takes them all): given on the
/// command line, each is a usage error (exit 2) rather than silently ignored. From the environment they are
/// allowed: one EnvironmentFile serves `apply`, `check` and `watch` alike.
fn not_used_by(command: &str) -> &'static [(&'static str, &'static str)] {
    const WAIT: (&str, &str) = ("wait_timeout", "it changes nothing, so it waits for nothing");
    const NO_WAIT: (&str, &str) = ("no_wait", "it changes nothing, so it waits for nothing");
    match command {
        "check" => &[WAIT, NO_WAIT],
        "doctor" => &[WAIT, NO_WAIT, ("evidence", "it reads IMDS and EC2 both, and says what each shows")],
        "watch" => &[
            ("no_wait", "it verifies each change before its next look"),
            ("output", "it reports by its log, one line per change or failure"),
        ],
        "fleet" => &[("imds_timeout", "it reads no IMDS"), ("evidence", "it reads every instance from EC2")],
        "defaults" => &[
            ("no_wait", "the defaults are read back at once"),
            ("wait_timeout", "the defaults are read back at once"),
            ("imds_timeout", "it reads no IMDS"),
            ("evidence", "the defaults are only in EC2"),
        ],
        _ => &[],
    }
}

fn unused_flag(args: &[std::ffi::OsString]) -> Option<String> {
    use clap::parser::ValueSource;
    let matches = Cli::command().try_get_matches_from(args).ok()?;
    let (name, sub) = matches.subcommand()?;
    let command = name.to_string();
    let name = match sub.try_get_raw("act").ok().flatten().and_then(|mut v| v.next()) {
        Some(act) => format!("{name} {}", act.to_string_lossy()),
        None => name.to_string(),
    };
    not_used_by(&command).iter().find_map(|(id, why)| {
        let given = [&matches, sub].iter().any(|m| m.value_source(id) == Some(ValueSource::CommandLine));
        given.then(|| {
            let flag = format!("--{}", id.replace('_', "-"));
            format!("error: `imds-hop-limit {name}` does not take {flag}: {why}\n")
        })
    })
}

fn explain(err: &clap::Error, args: &[std::ffi::OsString]) -> String {
    if !matches!(err.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return err.render().to_string();
    }
    let from_env = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => env_source(arg, args),
        _ => None,
    };
    match from_env {
        Some(var) => format!("error: the environment variable {var} is not valid for {}", err.render()),
        None => err.render().to_string(),
    }
}

/// The variable that gave `arg` (`--no-wait`, `--hop-limit <N>`) its value, when the command line did not.
fn env_source(arg: &str, args: &[std::ffi::OsString]) -> Option<String> {
    let long = arg.split_whitespace().next()?.strip_prefix("--")?;
    let given = args
        .iter()
        .any(|a| a.to_str().is_some_and(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}="))));
    if given {
        return None;
    }
    let command = Cli::command();
    let var = command.get_arguments().find(|a| a.get_long() == Some(long))?.get_env()?.to_str()?.to_string();
    std::env::var_os(&var).map(|_| var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_work_before_and_after_the_subcommand() {
        let a = Cli::try_parse_from(["imds-hop-limit", "--hop-limit", "3", "check"]).unwrap();
        let b = Cli::try_parse_from(["imds-hop-limit", "check", "--hop-limit", "3"]).unwrap();
        assert_eq!(a.options.hop_limit, 3);
        assert_eq!(b.options.hop_limit, 3);
        assert_eq!(a.command, Some(Command::Check));
    }

    #[test]
    fn hop_limit_outside_ec2s_range_is_refused() {
        for bad in ["0", "65", "-1", "two"] {
            assert!(Cli::try_parse_from(["imds-hop-limit", "--hop-limit", bad]).is_err(), "{bad}");
        }
    }
}
