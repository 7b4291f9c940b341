//! The command line, and the only place that knows flag names. Every flag that a unit file or an
//! EnvironmentFile may want to set also reads an `IMDS_HOP_LIMIT_*` variable.

use crate::duration::duration;
use crate::ids::{AccountId, ExternalId, InstanceId, Region, RoleName};
use crate::plan::{HttpTokens, Toggle};
use clap::builder::BoolishValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::str::FromStr;
use std::time::Duration;

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
                  9 defaults managed by a declarative policy, 10 the organization's accounts cannot be listed, \
                  130/143 interrupted by SIGINT/SIGTERM.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// `apply`'s flags, when no command is given (`imds-hop-limit --hop-limit 3`).
    #[command(flatten)]
    pub apply: ApplyArgs,

    #[command(flatten)]
    pub log: LogArgs,
}

/// Each command takes its own flags and no other: a flag that a command would not use is a usage error
/// (exit 2), never ignored; from the environment it is simply not read, so one EnvironmentFile serves
/// `apply`, `check` and `watch` alike.
#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Change the options when needed and wait until EC2 applies them (the default).
    Apply(ApplyArgs),
    /// Read and decide only: exit 0 when compliant, 3 when not. Changes nothing.
    Check(CheckArgs),
    /// Explain, step by step, why this instance or container gets no credentials. Changes nothing.
    Doctor(DoctorArgs),
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
    /// The launch templates new instances come from: their default version's metadata options, and a new
    /// version with the wanted hop limit made the default.
    #[command(
        long_about = "Reads each launch template's default version (DescribeLaunchTemplateVersions, every template's \
                      in one listing) and decides with the same rules as for instances: never lower, never IMDSv1, \
                      HttpTokens only when asked; a template that leaves the hop limit unset is judged by the \
                      region's account default. `apply` creates one new version from the default one, equal to it \
                      but for the metadata options, reads it back and compares, and makes it the default: Auto \
                      Scaling groups on $Default or $Latest launch with it from then on. Templates Karpenter or EKS \
                      own, and templates whose $Latest is not their default, are reported with their fix, never \
                      changed.",
        after_help = "Exit codes: 0 every template it may change is compliant at the end, 3 `check` or --dry-run \
                      found templates to change (owned ones included), 5 not authorized, 8 EC2 kept throttling, \
                      1 unexpected; 2 usage."
    )]
    Templates(TemplatesArgs),
}

/// `check` reads and decides; `apply` changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Act {
    Check,
    Apply,
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

// --- The commands' arguments, each a flattening of the groups below and its own flags ---

#[derive(Debug, Clone, PartialEq, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub wanted: WantedArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Ask EC2 (DryRun=true) whether the change would be authorized; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    /// Return once EC2 accepted the change, without waiting for `applied`.
    #[arg(long, env = "IMDS_HOP_LIMIT_NO_WAIT", value_parser = BoolishValueParser::new())]
    pub no_wait: bool,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub deadlines: AgentDeadlines,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub wanted: WantedArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    #[command(flatten)]
    pub deadlines: AgentDeadlines,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub wanted: WantedArgs,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub deadlines: AgentDeadlines,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub wanted: WantedArgs,
    /// The instance's region, instead of the one IMDS reports.
    #[arg(long, value_name = "REGION", env = "AWS_REGION", value_parser = Region::from_str)]
    pub region: Option<Region>,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    #[command(flatten)]
    pub deadlines: AgentDeadlines,

    /// How often to look through IMDS itself (two token requests to IMDS, no EC2 call).
    #[arg(long, value_name = "DURATION", default_value = "60s", env = "IMDS_HOP_LIMIT_INTERVAL",
          value_parser = duration)]
    pub interval: Duration,

    /// How often to look where IMDS cannot prove the hop limit: each look is one DescribeInstances from the
    /// account's shared budget (1,000 nodes at 30m: about one call every 2 s).
    #[arg(long, value_name = "DURATION", default_value = "30m", env = "IMDS_HOP_LIMIT_EC2_INTERVAL",
          value_parser = duration)]
    pub ec2_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct FleetArgs {
    /// check: read and decide, exit 3 when any instance needs a change; apply: change and verify.
    pub act: Act,

    #[command(flatten)]
    pub wanted: WantedArgs,

    /// Only these instances (several, or comma-separated).
    #[arg(long, value_name = "ID", value_delimiter = ',', value_parser = InstanceId::from_str)]
    pub instance_id: Vec<InstanceId>,

    #[command(flatten)]
    pub regions: RegionsArgs,

    #[command(flatten)]
    pub accounts: AccountsArgs,

    /// Only instances with this tag (KEY=VALUE, or KEY for any value); several are ANDed, as EC2 filters are.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,

    /// Ask EC2 (DryRun=true) whether each change would be authorized; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Return once EC2 accepted each change, without waiting for `applied`.
    #[arg(long, env = "IMDS_HOP_LIMIT_NO_WAIT", value_parser = BoolishValueParser::new())]
    pub no_wait: bool,

    #[command(flatten)]
    pub wait: WaitArgs,

    /// Deadline for the whole run, calls in flight and retries included (e.g. 10m) [default: none].
    #[arg(long, value_name = "DURATION", env = "IMDS_HOP_LIMIT_TIMEOUT", value_parser = positive_duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub output: OutputArgs,

    /// ModifyInstanceMetadataOptions calls a second, per region: EC2's documented refill is 5 (raise it
    /// only for an account whose limit AWS raised).
    #[arg(long, value_name = "PER_SECOND", default_value_t = 5.0)]
    pub modify_rate: f64,

    /// How many calls may go at once before the rate applies: EC2's documented bucket holds 100, shared
    /// with everything else the account runs.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub modify_burst: u32,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct DefaultsArgs {
    /// check: read and decide, exit 3 when the defaults differ; apply: change them and read them back.
    pub act: Act,

    #[command(flatten)]
    pub wanted: WantedArgs,

    #[command(flatten)]
    pub regions: RegionsArgs,

    #[command(flatten)]
    pub accounts: AccountsArgs,

    /// Deadline for the whole run, calls in flight and retries included [default: 120s].
    #[arg(long, value_name = "DURATION", env = "IMDS_HOP_LIMIT_TIMEOUT", value_parser = positive_duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct TemplatesArgs {
    /// check: read and decide, exit 3 when any template's default version needs a change; apply: change them.
    pub act: Act,

    #[command(flatten)]
    pub wanted: WantedArgs,

    /// Only these launch templates, by id (lt-...) or name (several, or comma-separated).
    #[arg(long, value_name = "ID|NAME", value_delimiter = ',')]
    pub launch_template: Vec<String>,

    #[command(flatten)]
    pub regions: RegionsArgs,

    #[command(flatten)]
    pub accounts: AccountsArgs,

    /// Decide and report what apply would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Deadline for the whole run, calls in flight and retries included [default: 10m].
    #[arg(long, value_name = "DURATION", env = "IMDS_HOP_LIMIT_TIMEOUT", value_parser = positive_duration)]
    pub timeout: Option<Duration>,

    #[command(flatten)]
    pub output: OutputArgs,
}

// --- The groups of flags that several commands share ---

/// What the instance (or the account's defaults) must end with.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct WantedArgs {
    /// Wanted HttpPutResponseHopLimit: at least this (1..=64).
    #[arg(long, value_name = "N", default_value_t = 2, env = "IMDS_HOP_LIMIT",
          value_parser = clap::value_parser!(i64).range(1..=64))]
    pub hop_limit: i64,

    /// Set the hop limit to exactly N, lowering a higher one.
    #[arg(long, env = "IMDS_HOP_LIMIT_EXACT", value_parser = BoolishValueParser::new())]
    pub exact: bool,

    /// Also set HttpTokens. Left alone when not given: the tool never re-enables IMDSv1 on its own.
    #[arg(long, value_name = "MODE", env = "IMDS_HOP_LIMIT_HTTP_TOKENS")]
    pub http_tokens: Option<HttpTokens>,

    /// Also set HttpProtocolIpv6 (the fd00:ec2::254 endpoint).
    #[arg(long, value_name = "STATE", env = "IMDS_HOP_LIMIT_IPV6_ENDPOINT")]
    pub ipv6_endpoint: Option<Toggle>,

    /// Also set InstanceMetadataTags.
    #[arg(long, value_name = "STATE", env = "IMDS_HOP_LIMIT_INSTANCE_TAGS")]
    pub instance_tags: Option<Toggle>,
}

/// Which instance the single-instance commands work on.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct TargetArgs {
    /// The instance to change, instead of this instance's own id from IMDS.
    #[arg(long, value_name = "ID", value_parser = InstanceId::from_str)]
    pub instance_id: Option<InstanceId>,

    /// The instance's region, instead of the one IMDS reports.
    #[arg(long, value_name = "REGION", env = "AWS_REGION", value_parser = Region::from_str)]
    pub region: Option<Region>,
}

/// Which regions fleet and defaults work on.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RegionsArgs {
    /// The regions (several, or comma-separated) [default: AWS_REGION or the profile's].
    #[arg(long, value_name = "REGION", env = "AWS_REGION", value_delimiter = ',', value_parser = Region::from_str)]
    pub region: Vec<Region>,

    /// Every region enabled for the account (DescribeRegions), instead of --region or AWS_REGION.
    #[arg(long)]
    pub all_regions: bool,
}

/// Which accounts fleet and defaults work in: the credentials' own, or an organization's.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct AccountsArgs {
    /// Every ACTIVE account of the AWS Organization (organizations:ListAccounts, from the management account or
    /// a delegated administrator), each through --role-name; the credentials' own account with the credentials.
    #[arg(long, conflicts_with = "accounts")]
    pub organization: bool,

    /// These accounts (12-digit ids; several, or comma-separated), each through --role-name.
    #[arg(long, value_name = "ID", value_delimiter = ',', value_parser = AccountId::from_str)]
    pub accounts: Vec<AccountId>,

    /// The accounts listed in FILE: one id a line, `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    pub accounts_file: Option<std::path::PathBuf>,

    /// The IAM role assumed in each account (arn:PARTITION:iam::ID:role/NAME); needed with --organization,
    /// --accounts and --accounts-file.
    #[arg(long, value_name = "NAME", value_parser = RoleName::from_str)]
    pub role_name: Option<RoleName>,

    /// The external id the role's trust policy asks for.
    #[arg(long, value_name = "ID", value_parser = ExternalId::from_str)]
    pub external_id: Option<ExternalId>,

    /// How many accounts send their changes at once (each account's regions side by side within it); an account
    /// verifies its changes beside the next ones.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub accounts_at_once: u16,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct EvidenceArgs {
    /// How the options are known: `imds` senses the hop limit from IMDS's own token answer where it can prove
    /// it (a compliant instance costs no EC2 call), else asks EC2; `ec2` always asks EC2.
    #[arg(long, value_name = "SOURCE", default_value = "imds", env = "IMDS_HOP_LIMIT_EVIDENCE")]
    pub evidence: EvidenceSource,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct WaitArgs {
    /// How long to wait for EC2 to report a change applied (e.g. 120, 90s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "120s", env = "IMDS_HOP_LIMIT_WAIT_TIMEOUT",
          value_parser = duration)]
    pub wait_timeout: Duration,
}

/// The single-instance commands' bounds: the whole run's, and how long IMDS may be missing at boot.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct AgentDeadlines {
    /// How long to retry a metadata service that refuses connections or is throttling (at boot); bounds
    /// how long the unit can hold docker.service back when IMDS is missing.
    #[arg(long, value_name = "DURATION", default_value = "30s", env = "IMDS_HOP_LIMIT_IMDS_TIMEOUT",
          value_parser = duration)]
    pub imds_timeout: Duration,

    /// Deadline for the whole run, metadata retries at boot included (e.g. 180, 3m).
    #[arg(long, value_name = "DURATION", default_value = "180s", env = "IMDS_HOP_LIMIT_TIMEOUT",
          value_parser = positive_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct OutputArgs {
    /// Print the result as one JSON object on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text, env = "IMDS_HOP_LIMIT_OUTPUT")]
    pub output: Output,
}

/// Every command's log level.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct LogArgs {
    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log detail on stderr (-q warnings and errors only, -qq errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
}

/// A deadline: a duration, and more than 0 (a run that may take no time at all can only give up).
fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("a deadline must be more than 0".into()),
        d => Ok(d),
    }
}

impl Cli {
    /// The command to run (`apply`, with the top level's flags, when none is named).
    pub fn chosen(&self) -> Command {
        self.command.clone().unwrap_or_else(|| Command::Apply(self.apply.clone()))
    }

    /// `--output`, for the one report of a failure; text for `watch`, which reports by its log.
    pub fn output(&self) -> Output {
        match self.chosen() {
            Command::Apply(a) => a.output.output,
            Command::Check(c) => c.output.output,
            Command::Doctor(d) => d.output.output,
            Command::Fleet(f) => f.output.output,
            Command::Defaults(d) => d.output.output,
            Command::Templates(t) => t.output.output,
            Command::Watch(_) => Output::Text,
        }
    }
}

impl Cli {
    /// Parses the command line. A bad value that came from an `IMDS_HOP_LIMIT_*` (or `AWS_REGION`) variable,
    /// as an EnvironmentFile sets them, is reported with the variable's name, not only the flag's; a flag that
    /// another command takes is reported with why this one does not.
    /// On `Err`, the text to print and whether it is `--help` or `--version` (stdout, exit 0) rather than a
    /// usage error (stderr, exit 2).
    pub fn parse_or_explain(args: Vec<std::ffi::OsString>) -> Result<Cli, (String, bool)> {
        Cli::try_parse_from(&args).map_err(|err| (explain(&err, &args), !err.use_stderr()))
    }
}

/// Why a command does not take a flag that another one does: said beside clap's own error, so that a flag
/// copied from another command's line is understood, not only refused.
fn not_used_by(command: &str, flag: &str) -> Option<&'static str> {
    const WAITS: &str = "it changes nothing, so it waits for nothing";
    Some(match (command, flag) {
        ("check" | "doctor", "--wait-timeout" | "--no-wait") => WAITS,
        ("check" | "doctor", "--dry-run") => "it changes nothing already",
        ("doctor", "--evidence") => "it reads IMDS and EC2 both, and says what each shows",
        ("watch", "--no-wait") => "it verifies each change before its next look",
        ("watch", "--output") => "it reports by its log, one line per change or failure",
        ("watch", "--dry-run") => "it keeps the instance compliant: use `check` to change nothing",
        ("watch", "--instance-id") => "it keeps this instance compliant (fleet covers other instances)",
        ("fleet" | "defaults", "--imds-timeout") => "it reads no IMDS",
        ("fleet" | "defaults", "--evidence") => "it reads from EC2 only",
        ("defaults", "--no-wait" | "--wait-timeout") => "the defaults are read back at once",
        ("defaults", "--instance-id") => "defaults are per account and region",
        ("defaults", "--dry-run") => "ModifyInstanceMetadataDefaults has no dry run: use `defaults check`",
        _ => return None,
    })
}

/// The command the arguments name, with fleet's and defaults' act (`fleet check`), or `None` for `apply`.
fn named_command(args: &[std::ffi::OsString]) -> Option<String> {
    let names: Vec<String> =
        <Cli as CommandFactory>::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    let mut words = args.iter().skip(1).filter_map(|a| a.to_str());
    let name = words.find(|w| names.iter().any(|n| n == w))?;
    Some(match words.next() {
        Some(act @ ("check" | "apply")) if matches!(name, "fleet" | "defaults") => format!("{name} {act}"),
        _ => name.to_string(),
    })
}

fn explain(err: &clap::Error, args: &[std::ffi::OsString]) -> String {
    let invalid = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.as_str()),
        _ => None,
    };
    match err.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => match invalid.and_then(|a| env_source(a, args)) {
            Some(var) => format!("error: the environment variable {var} is not valid for {}", err.render()),
            None => err.render().to_string(),
        },
        ErrorKind::UnknownArgument => {
            let flag = invalid.and_then(|a| a.split(['=', ' ']).next()).unwrap_or_default();
            let command = named_command(args);
            let command = command.unwrap_or_else(|| "apply".into());
            let base = command.split(' ').next().unwrap_or_default();
            match not_used_by(base, flag) {
                Some(why) => {
                    format!("error: `imds-hop-limit {command}` does not take {flag}: {why}\n\n{}", err.render())
                }
                None => err.render().to_string(),
            }
        }
        _ => err.render().to_string(),
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
    // The same flag reads the same variable in every command that takes it.
    let command = Cli::command();
    let var = std::iter::once(&command)
        .chain(command.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_string();
    std::env::var_os(&var).map(|_| var)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let mut argv = vec!["imds-hop-limit".into()];
        argv.extend(args.iter().map(std::ffi::OsString::from));
        Cli::parse_or_explain(argv).map_err(|(message, _)| message)
    }

    #[test]
    fn no_command_is_apply_with_the_top_levels_flags() {
        let cli = parse(&["--hop-limit", "3", "--dry-run"]).unwrap();
        let Command::Apply(a) = cli.chosen() else { panic!("apply") };
        assert_eq!((a.wanted.hop_limit, a.dry_run), (3, true));
        let Command::Check(c) = parse(&["check", "--hop-limit", "3"]).unwrap().chosen() else { panic!("check") };
        assert_eq!(c.wanted.hop_limit, 3);
    }

    /// A flag that the command would not use is refused, never ignored: another command's, or apply's flag
    /// before a command's name.
    #[test]
    fn each_command_takes_its_own_flags_only() {
        for (args, says) in [
            (&["check", "--wait-timeout", "5s"][..], "`imds-hop-limit check` does not take --wait-timeout"),
            (&["fleet", "check", "--imds-timeout=5"], "`imds-hop-limit fleet check` does not take --imds-timeout"),
            (&["defaults", "apply", "--dry-run"], "has no dry run"),
            (&["watch", "--instance-id", "i-12345678"], "fleet covers other instances"),
            (&["--hop-limit", "3", "check"], "the subcommand 'check' cannot be used with '--hop-limit <N>'"),
            (&["check", "--frobnicate"], "unexpected argument '--frobnicate'"),
        ] {
            let message = parse(args).map(|_| ()).unwrap_err();
            assert!(message.contains(says), "{args:?}: {message}");
        }
    }

    #[test]
    fn every_duration_reads_the_same_way_and_a_deadline_is_more_than_0() {
        let d = |t: &str| duration(t).ok();
        assert_eq!(d("120"), Some(Duration::from_secs(120)));
        assert_eq!(d("90s"), Some(Duration::from_secs(90)));
        assert_eq!(d("2m"), Some(Duration::from_secs(120)));
        assert_eq!(d("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "s", "-1", "1.5", "1h", "abc", "99999999999999999999"] {
            assert_eq!(d(bad), None, "{bad}");
        }
        for args in
            [&["--timeout", "0"][..], &["fleet", "check", "--timeout", "0s"], &["defaults", "check", "--timeout=0"]]
        {
            let message = parse(args).map(|_| ()).unwrap_err();
            assert!(message.contains("--timeout") && message.contains("more than 0"), "{args:?}: {message}");
        }
    }

    #[test]
    fn hop_limit_outside_ec2s_range_is_refused() {
        for bad in ["0", "65", "-1", "two"] {
            assert!(Cli::try_parse_from(["imds-hop-limit", "--hop-limit", bad]).is_err(), "{bad}");
        }
    }
}
