//! The decision: what must change so that an instance's metadata options are what the operator wants.
//! Pure: no I/O, no SDK types, so every combination can be checked in unit tests.

use serde::Serialize;
use std::fmt;

/// `HttpPutResponseHopLimit`: how many IP hops the token answer may travel (EC2 allows 1..=64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct HopLimit(u8);

impl HopLimit {
    pub const MIN: u8 = 1;
    pub const MAX: u8 = 64;

    pub fn new(value: i64) -> Option<Self> {
        u8::try_from(value).ok().filter(|v| (Self::MIN..=Self::MAX).contains(v)).map(Self)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for HopLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HttpTokens {
    Required,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    Enabled,
    Disabled,
}

/// Whether EC2 has put the last change to the metadata options into effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Applied,
}

/// An instance's life-cycle state as EC2 names it, or what this program knows instead: a name this build
/// does not know (never shown as EC2 sent it: remote text), or an instance asked for by id and not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
    Unknown,
}

impl InstanceState {
    /// Gone, or going: its metadata options no longer matter and can no longer be changed.
    pub fn is_gone(self) -> bool {
        matches!(self, InstanceState::ShuttingDown | InstanceState::Terminated)
    }
}

macro_rules! display_as_serde_name {
    ($($ty:ty => { $($variant:ident = $name:literal),+ })+) => {$(
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )+};
}

display_as_serde_name! {
    HttpTokens => { Required = "required", Optional = "optional" }
    Toggle => { Enabled = "enabled", Disabled = "disabled" }
    State => { Pending = "pending", Applied = "applied" }
    InstanceState => {
        Pending = "pending", Running = "running", ShuttingDown = "shutting-down", Terminated = "terminated",
        Stopping = "stopping", Stopped = "stopped", Unknown = "unknown"
    }
}

/// An instance's metadata options as EC2 reports them. `None` is a field EC2 left out: unknown, not an
/// error (moto, for one, omits fields it was never given).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetadataOptions {
    pub state: Option<State>,
    pub http_tokens: Option<HttpTokens>,
    pub hop_limit: Option<HopLimit>,
    pub http_endpoint: Option<Toggle>,
    pub ipv6_endpoint: Option<Toggle>,
    pub instance_tags: Option<Toggle>,
}

impl MetadataOptions {
    /// These options, with each field EC2 left out taken from `fallback`.
    pub fn or(&self, fallback: &MetadataOptions) -> MetadataOptions {
        MetadataOptions {
            state: self.state.or(fallback.state),
            http_tokens: self.http_tokens.or(fallback.http_tokens),
            hop_limit: self.hop_limit.or(fallback.hop_limit),
            http_endpoint: self.http_endpoint.or(fallback.http_endpoint),
            ipv6_endpoint: self.ipv6_endpoint.or(fallback.ipv6_endpoint),
            instance_tags: self.instance_tags.or(fallback.instance_tags),
        }
    }
}

/// What the operator asked for. The endpoint is always wanted enabled: that is the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub hop_limit: HopLimit,
    /// Lower a higher hop limit to `hop_limit` instead of keeping it.
    pub exact: bool,
    /// `None` leaves HttpTokens alone: the tool never re-enables IMDSv1 on its own.
    pub http_tokens: Option<HttpTokens>,
    pub ipv6_endpoint: Option<Toggle>,
    pub instance_tags: Option<Toggle>,
}

/// The fields of one ModifyInstanceMetadataOptions call; `None` is a field not sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Change {
    pub hop_limit: Option<HopLimit>,
    pub http_tokens: Option<HttpTokens>,
    pub http_endpoint: Option<Toggle>,
    pub ipv6_endpoint: Option<Toggle>,
    pub instance_tags: Option<Toggle>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl Change {
    /// Whether `options` already carry every value this change sends (EC2 took it, applied or not).
    pub fn is_reflected_in(&self, options: &MetadataOptions) -> bool {
        fn has<T: PartialEq>(sent: Option<T>, now: Option<T>) -> bool {
            sent.is_none() || sent == now
        }
        has(self.hop_limit, options.hop_limit)
            && has(self.http_tokens, options.http_tokens)
            && has(self.http_endpoint, options.http_endpoint)
            && has(self.ipv6_endpoint, options.ipv6_endpoint)
            && has(self.instance_tags, options.instance_tags)
    }

    /// What EC2 documents the options become: the fields sent, the others kept.
    pub fn applied_to(&self, before: &MetadataOptions) -> MetadataOptions {
        MetadataOptions {
            state: None,
            http_tokens: self.http_tokens,
            hop_limit: self.hop_limit,
            http_endpoint: self.http_endpoint,
            ipv6_endpoint: self.ipv6_endpoint,
            instance_tags: self.instance_tags,
        }
        .or(before)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Unchanged,
    Change(Change),
}

/// A field must be sent when what is wanted differs from what EC2 reports, or EC2 did not say.
fn needs<T: PartialEq + Copy>(wanted: Option<T>, current: Option<T>) -> Option<T> {
    wanted.filter(|w| current != Some(*w))
}

pub fn plan(current: &MetadataOptions, wanted: &Wanted) -> Plan {
    let hop_limit_ok = match current.hop_limit {
        Some(have) if wanted.exact => have == wanted.hop_limit,
        Some(have) => have >= wanted.hop_limit,
        None => false,
    };
    let change = Change {
        hop_limit: (!hop_limit_ok).then_some(wanted.hop_limit),
        http_tokens: needs(wanted.http_tokens, current.http_tokens),
        http_endpoint: needs(Some(Toggle::Enabled), current.http_endpoint),
        ipv6_endpoint: needs(wanted.ipv6_endpoint, current.ipv6_endpoint),
        instance_tags: needs(wanted.instance_tags, current.instance_tags),
    };
    if change.is_empty() { Plan::Unchanged } else { Plan::Change(change) }
}

/// What to do about one instance, as the agent, doctor and the fleet all decide it. In effect: the values are
/// what is wanted and EC2 no longer reports a change pending; a state EC2 leaves out counts as in effect, since
/// there is nothing else to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The values are what is wanted and in effect: nothing to send.
    InEffect,
    /// The values are what is wanted but EC2 still reports a change pending (somebody's change in flight):
    /// nothing to send; `apply` sees it through to `applied`.
    Pending,
    /// This change must be sent.
    Change(Change),
}

pub fn decide(current: &MetadataOptions, wanted: &Wanted) -> Decision {
    match plan(current, wanted) {
        Plan::Change(change) => Decision::Change(change),
        Plan::Unchanged if current.state == Some(State::Pending) => Decision::Pending,
        Plan::Unchanged => Decision::InEffect,
    }
}

/// Verified after a change: the values are what is wanted and EC2 says `applied`. Stricter than
/// `Decision::InEffect`: a change was just sent, so an unreported state is no evidence that it was applied.
pub fn is_applied(current: &MetadataOptions, wanted: &Wanted) -> bool {
    plan(current, wanted) == Plan::Unchanged && current.state == Some(State::Applied)
}

/// What a run means to do with an instance, whatever the command: only read (`check`, doctor), ask EC2
/// whether the change would be authorized (`--dry-run`), or change it and, unless `--no-wait`, see it applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    Check,
    DryRun,
    Apply { wait: bool },
}

impl Intent {
    /// Sends ModifyInstanceMetadataOptions (for real, or as a dry run): not `check`.
    pub fn sends(self) -> bool {
        self != Intent::Check
    }

    /// Changes for real, and so may have to see the change applied.
    pub fn changes(self) -> bool {
        matches!(self, Intent::Apply { .. })
    }

    /// Changes for real and sees each change through to `applied` (not `--no-wait`).
    pub fn waits(self) -> bool {
        self == Intent::Apply { wait: true }
    }

    /// The command's word in reports: `check`, or `apply` (with `--dry-run` or not).
    pub fn verb(self) -> &'static str {
        if self == Intent::Check { "check" } else { "apply" }
    }
}

/// What to do about one instance: the decision under the run's intent. The agent, the fleet and doctor's
/// probe all take it from `step`, so they cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// In effect: nothing to send, nothing to wait for.
    Nothing,
    /// Not compliant, and this run changes nothing: report it.
    NotCompliant,
    /// The wanted values, still pending (somebody's change in flight), and `--no-wait`: left as they are.
    LeavePending,
    /// The wanted values, still pending: see them through to `applied`, as a change of ours would be.
    SeeThrough,
    /// Send this change; `dry_run`: only ask whether it would be authorized.
    Send { change: Change, dry_run: bool },
}

pub fn step(decision: Decision, intent: Intent) -> Step {
    match (decision, intent) {
        (Decision::InEffect, _) => Step::Nothing,
        (Decision::Pending, Intent::Check | Intent::DryRun) => Step::NotCompliant,
        (Decision::Pending, Intent::Apply { wait: false }) => Step::LeavePending,
        (Decision::Pending, Intent::Apply { wait: true }) => Step::SeeThrough,
        (Decision::Change(_), Intent::Check) => Step::NotCompliant,
        (Decision::Change(change), Intent::DryRun) => Step::Send { change, dry_run: true },
        (Decision::Change(change), Intent::Apply { .. }) => Step::Send { change, dry_run: false },
    }
}

/// What one read of an instance being waited on says: the one rule for the agent's wait and the fleet's
/// batched verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The wanted values, and EC2 says `applied`.
    Applied,
    /// Stopped, with the wanted values: EC2 applies them when it starts, so there is nothing to wait for.
    AppliesAtStart,
    /// Terminated or shutting down: it will never apply.
    Gone,
    /// Not yet: read it again.
    Waiting,
}

/// `read` is EC2's answer; a value it leaves out is taken from `expected` (EC2 keeps what a change does not
/// send; moto, for one, then omits those fields), the state never is: an unreported state is not `applied`.
pub fn verdict(state: InstanceState, read: &MetadataOptions, expected: &MetadataOptions, wanted: &Wanted) -> Verdict {
    let seen = seen(read, expected);
    if state.is_gone() {
        Verdict::Gone
    } else if state == InstanceState::Stopped && plan(&seen, wanted) == Plan::Unchanged {
        Verdict::AppliesAtStart
    } else if is_applied(&seen, wanted) {
        Verdict::Applied
    } else {
        Verdict::Waiting
    }
}

/// The options as a wait sees them: what EC2 read, the rest from `expected`, the state only as read.
pub fn seen(read: &MetadataOptions, expected: &MetadataOptions) -> MetadataOptions {
    MetadataOptions { state: read.state, ..read.or(expected) }
}

// --- Text: how options read in every message and report, one renderer for all ---

/// What a value that is not there means where it is shown: EC2 left the field out of its answer (`unknown`),
/// or an account default that is not set (`no preference`, as EC2 names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    Unknown,
    NoPreference,
    /// A launch template's field it leaves unset.
    NotSet,
}

/// One value as text, or what its absence means.
pub fn show<T: fmt::Display>(value: Option<T>, absent: Absent) -> String {
    match (value, absent) {
        (Some(v), _) => v.to_string(),
        (None, Absent::Unknown) => "unknown".into(),
        (None, Absent::NoPreference) => "no preference".into(),
        (None, Absent::NotSet) => "not set".into(),
    }
}

/// A field of the metadata options, by the name messages give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    HopLimit,
    Endpoint,
    HttpTokens,
    Ipv6Endpoint,
    InstanceTags,
}

impl Field {
    pub const ALL: [Field; 5] =
        [Field::HopLimit, Field::Endpoint, Field::HttpTokens, Field::Ipv6Endpoint, Field::InstanceTags];
    /// The two that compliance is about.
    pub const COMPLIANCE: [Field; 2] = [Field::HopLimit, Field::Endpoint];
    /// Those the account defaults have (no IPv6 endpoint setting).
    pub const DEFAULTS: [Field; 4] = [Field::HopLimit, Field::Endpoint, Field::HttpTokens, Field::InstanceTags];

    fn name(self) -> &'static str {
        match self {
            Field::HopLimit => "hop limit",
            Field::Endpoint => "endpoint",
            Field::HttpTokens => "http tokens",
            Field::Ipv6Endpoint => "ipv6 endpoint",
            Field::InstanceTags => "instance tags",
        }
    }

    fn of(self, o: &MetadataOptions, absent: Absent) -> String {
        match self {
            Field::HopLimit => show(o.hop_limit, absent),
            Field::Endpoint => show(o.http_endpoint, absent),
            Field::HttpTokens => show(o.http_tokens, absent),
            Field::Ipv6Endpoint => show(o.ipv6_endpoint, absent),
            Field::InstanceTags => show(o.instance_tags, absent),
        }
    }
}

impl MetadataOptions {
    /// `hop limit 2, endpoint enabled`: the `fields`, in that order.
    pub fn describe(&self, fields: &[Field], absent: Absent) -> String {
        let parts: Vec<String> = fields.iter().map(|f| format!("{} {}", f.name(), f.of(self, absent))).collect();
        parts.join(", ")
    }

    /// What compliance is about, as last read: `state pending, hop limit 2, endpoint enabled`; a read that
    /// reports no state says that it cannot be verified applied.
    pub fn last_read(&self) -> String {
        let values = match (self.hop_limit, self.http_endpoint) {
            (None, None) => "no values reported".to_string(),
            _ => self.describe(&Field::COMPLIANCE, Absent::Unknown),
        };
        match self.state {
            Some(state) => format!("state {state}, {values}"),
            None => format!(
                "EC2 reported no state for the metadata options ({values}), so the change cannot be verified applied"
            ),
        }
    }

    /// `hop limit 1 -> 2, endpoint enabled -> disabled`: the fields that differ in `after`, or `no change`.
    pub fn changes_to(&self, after: &MetadataOptions) -> String {
        let changed: Vec<String> = Field::ALL
            .iter()
            .map(|f| (f.name(), f.of(self, Absent::Unknown), f.of(after, Absent::Unknown)))
            .filter(|(_, b, a)| b != a)
            .map(|(name, b, a)| format!("{name} {b} -> {a}"))
            .collect();
        if changed.is_empty() { "no change".into() } else { changed.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_read_the_same_in_every_message() {
        let o = MetadataOptions {
            state: Some(State::Pending),
            hop_limit: HopLimit::new(2),
            http_endpoint: Some(Toggle::Enabled),
            ..MetadataOptions::default()
        };
        assert_eq!(o.describe(&Field::COMPLIANCE, Absent::Unknown), "hop limit 2, endpoint enabled");
        assert_eq!(
            o.describe(&Field::DEFAULTS, Absent::NoPreference),
            "hop limit 2, endpoint enabled, http tokens no preference, instance tags no preference"
        );
        assert_eq!(o.last_read(), "state pending, hop limit 2, endpoint enabled");
        let unread = MetadataOptions::default();
        assert_eq!(
            unread.last_read(),
            "EC2 reported no state for the metadata options (no values reported), so the change cannot be verified \
             applied"
        );
        let after =
            MetadataOptions { hop_limit: HopLimit::new(3), http_tokens: Some(HttpTokens::Required), ..o.clone() };
        assert_eq!(o.changes_to(&after), "hop limit 2 -> 3, http tokens unknown -> required");
        assert_eq!(o.changes_to(&o), "no change");
    }

    fn hl(n: i64) -> HopLimit {
        HopLimit::new(n).unwrap()
    }

    fn wanted(n: i64) -> Wanted {
        Wanted { hop_limit: hl(n), exact: false, http_tokens: None, ipv6_endpoint: None, instance_tags: None }
    }

    fn current(hop: Option<i64>, endpoint: Option<Toggle>) -> MetadataOptions {
        MetadataOptions {
            state: Some(State::Applied),
            http_tokens: Some(HttpTokens::Optional),
            hop_limit: hop.map(hl),
            http_endpoint: endpoint,
            ipv6_endpoint: Some(Toggle::Disabled),
            instance_tags: Some(Toggle::Disabled),
        }
    }

    #[test]
    fn hop_limit_bounds_are_ec2s() {
        assert_eq!(HopLimit::new(0), None);
        assert_eq!(HopLimit::new(1).map(HopLimit::get), Some(1));
        assert_eq!(HopLimit::new(64).map(HopLimit::get), Some(64));
        assert_eq!(HopLimit::new(65), None);
        assert_eq!(HopLimit::new(-1), None);
    }

    /// For every hop limit and endpoint: once the planned change is applied, nothing is left to change, and a
    /// hop limit that was enough is not sent.
    #[test]
    fn a_planned_change_leaves_nothing_to_change() {
        let endpoints = [None, Some(Toggle::Enabled), Some(Toggle::Disabled)];
        for exact in [false, true] {
            for want in 1..=64 {
                for have in std::iter::once(None).chain((1..=64).map(Some)) {
                    for endpoint in endpoints {
                        let w = Wanted { exact, ..wanted(want) };
                        let before = current(have, endpoint);
                        let after = match plan(&before, &w) {
                            Plan::Unchanged => before.clone(),
                            Plan::Change(change) => {
                                assert!(!change.is_empty());
                                if !exact && have >= Some(want) {
                                    assert_eq!(change.hop_limit, None, "{have:?} is enough for {want}");
                                }
                                change.applied_to(&before)
                            }
                        };
                        assert_eq!(plan(&after, &w), Plan::Unchanged, "want {want} exact {exact} have {have:?}");
                    }
                }
            }
        }
    }

    /// Expectations written out from README's rules ("at least N, a higher one kept unless --exact; endpoint
    /// always enabled; HttpTokens, the IPv6 endpoint and instance tags only when asked; a field EC2 leaves out is
    /// unknown and sent when wanted"), not recomputed with the planner's logic, and combining the fields.
    #[test]
    fn readme_rules_over_combined_fields() {
        use HttpTokens::{Optional as Opt, Required as Req};
        use Toggle::{Disabled as Off, Enabled as On};
        struct Have(Option<i64>, Option<Toggle>, Option<HttpTokens>, Option<Toggle>, Option<Toggle>);
        struct Want(i64, bool, Option<HttpTokens>, Option<Toggle>, Option<Toggle>);
        #[derive(Clone, Copy)]
        struct Sent(Option<i64>, Option<Toggle>, Option<HttpTokens>, Option<Toggle>, Option<Toggle>);
        let none = Sent(None, None, None, None, None);
        let cases = [
            (
                "raise 1 to 2",
                Have(Some(1), Some(On), Some(Opt), Some(Off), Some(Off)),
                Want(2, false, None, None, None),
                Sent(Some(2), None, None, None, None),
            ),
            (
                "keep a higher 3",
                Have(Some(3), Some(On), Some(Opt), Some(Off), Some(Off)),
                Want(2, false, None, None, None),
                none,
            ),
            (
                "exact lowers 3 to 2",
                Have(Some(3), Some(On), Some(Opt), Some(Off), Some(Off)),
                Want(2, true, None, None, None),
                Sent(Some(2), None, None, None, None),
            ),
            (
                "exact lowers 64 to 1",
                Have(Some(64), Some(On), None, None, None),
                Want(1, true, None, None, None),
                Sent(Some(1), None, None, None, None),
            ),
            (
                "enable a disabled endpoint only",
                Have(Some(2), Some(Off), Some(Opt), Some(Off), Some(Off)),
                Want(2, false, None, None, None),
                Sent(None, Some(On), None, None, None),
            ),
            (
                "hop, endpoint and tokens together",
                Have(Some(1), Some(Off), Some(Opt), Some(Off), Some(Off)),
                Want(2, false, Some(Req), None, None),
                Sent(Some(2), Some(On), Some(Req), None, None),
            ),
            (
                "tokens back to optional only when asked",
                Have(Some(2), Some(On), Some(Req), Some(Off), Some(Off)),
                Want(2, false, Some(Opt), None, None),
                Sent(None, None, Some(Opt), None, None),
            ),
            (
                "tokens never touched unasked",
                Have(Some(1), Some(On), Some(Req), Some(Off), Some(Off)),
                Want(2, false, None, None, None),
                Sent(Some(2), None, None, None, None),
            ),
            (
                "unknown hop limit and endpoint are sent",
                Have(None, None, Some(Opt), Some(Off), Some(Off)),
                Want(2, false, None, None, None),
                Sent(Some(2), Some(On), None, None, None),
            ),
            (
                "unknown tokens sent when asked",
                Have(Some(2), Some(On), None, Some(Off), Some(Off)),
                Want(2, false, Some(Req), None, None),
                Sent(None, None, Some(Req), None, None),
            ),
            (
                "toggles with the hop limit",
                Have(Some(1), Some(On), Some(Opt), Some(Off), Some(Off)),
                Want(2, false, None, Some(On), Some(On)),
                Sent(Some(2), None, None, Some(On), Some(On)),
            ),
            (
                "toggles and tokens at an exact limit already met",
                Have(Some(4), Some(On), Some(Opt), Some(On), Some(Off)),
                Want(4, true, Some(Req), Some(Off), Some(Off)),
                Sent(None, None, Some(Req), Some(Off), None),
            ),
            (
                "all as wanted",
                Have(Some(2), Some(On), Some(Req), Some(On), Some(On)),
                Want(2, false, Some(Req), Some(On), Some(On)),
                none,
            ),
        ];
        for (name, have, want, sent) in cases {
            let current = MetadataOptions {
                state: Some(State::Applied),
                hop_limit: have.0.map(hl),
                http_endpoint: have.1,
                http_tokens: have.2,
                ipv6_endpoint: have.3,
                instance_tags: have.4,
            };
            let wanted = Wanted {
                hop_limit: hl(want.0),
                exact: want.1,
                http_tokens: want.2,
                ipv6_endpoint: want.3,
                instance_tags: want.4,
            };
            let expected = Change {
                hop_limit: sent.0.map(hl),
                http_endpoint: sent.1,
                http_tokens: sent.2,
                ipv6_endpoint: sent.3,
                instance_tags: sent.4,
            };
            let expected = if expected.is_empty() { Plan::Unchanged } else { Plan::Change(expected) };
            assert_eq!(plan(&current, &wanted), expected, "{name}");
        }
    }

    #[test]
    fn a_higher_hop_limit_is_kept_unless_exact() {
        assert_eq!(plan(&current(Some(5), Some(Toggle::Enabled)), &wanted(2)), Plan::Unchanged);
        let exact = Wanted { exact: true, ..wanted(2) };
        assert_eq!(
            plan(&current(Some(5), Some(Toggle::Enabled)), &exact),
            Plan::Change(Change { hop_limit: Some(hl(2)), ..Change::default() })
        );
    }

    #[test]
    fn http_tokens_are_never_touched_unless_asked() {
        for have in [None, Some(HttpTokens::Optional), Some(HttpTokens::Required)] {
            let mut cur = current(Some(2), Some(Toggle::Enabled));
            cur.http_tokens = have;
            assert_eq!(plan(&cur, &wanted(2)), Plan::Unchanged, "{have:?}");
            for ask in [HttpTokens::Optional, HttpTokens::Required] {
                let w = Wanted { http_tokens: Some(ask), ..wanted(2) };
                let expected = if have == Some(ask) {
                    Plan::Unchanged
                } else {
                    Plan::Change(Change { http_tokens: Some(ask), ..Change::default() })
                };
                assert_eq!(plan(&cur, &w), expected, "have {have:?} ask {ask:?}");
            }
        }
    }

    /// The IPv6 endpoint and instance tags: sent only when asked for and not already so; a value EC2 left
    /// out is unknown, so an asked one is sent. Written out by hand, each row (have, ask, sent) for both.
    #[test]
    fn optional_toggles_change_only_when_asked_and_different() {
        use Toggle::{Disabled as Off, Enabled as On};
        let rows = [
            // (ipv6: have, ask, sent), (tags: have, ask, sent)
            ((None, None, None), (Some(On), None, None)),
            ((Some(On), Some(On), None), (Some(Off), Some(Off), None)),
            ((Some(Off), Some(On), Some(On)), (Some(On), None, None)),
            ((None, Some(Off), Some(Off)), (None, None, None)),
            ((Some(On), Some(Off), Some(Off)), (Some(Off), Some(On), Some(On))),
            ((Some(Off), None, None), (None, Some(On), Some(On))),
        ];
        for ((have_v6, ask_v6, sent_v6), (have_tags, ask_tags, sent_tags)) in rows {
            let cur = MetadataOptions {
                ipv6_endpoint: have_v6,
                instance_tags: have_tags,
                ..current(Some(2), Some(Toggle::Enabled))
            };
            let w = Wanted { ipv6_endpoint: ask_v6, instance_tags: ask_tags, ..wanted(2) };
            let got = match plan(&cur, &w) {
                Plan::Unchanged => (None, None),
                Plan::Change(c) => (c.ipv6_endpoint, c.instance_tags),
            };
            assert_eq!(got, (sent_v6, sent_tags), "have {have_v6:?}/{have_tags:?}, ask {ask_v6:?}/{ask_tags:?}");
        }
    }

    #[test]
    fn a_change_carries_only_what_differs() {
        let cur = MetadataOptions { hop_limit: Some(hl(1)), ..current(Some(1), Some(Toggle::Enabled)) };
        let w = Wanted { http_tokens: Some(HttpTokens::Required), ..wanted(2) };
        assert_eq!(
            plan(&cur, &w),
            Plan::Change(Change {
                hop_limit: Some(hl(2)),
                http_tokens: Some(HttpTokens::Required),
                ..Change::default()
            })
        );
    }

    #[test]
    fn everything_unknown_sets_hop_limit_and_endpoint_only() {
        assert_eq!(
            plan(&MetadataOptions::default(), &wanted(2)),
            Plan::Change(Change { hop_limit: Some(hl(2)), http_endpoint: Some(Toggle::Enabled), ..Change::default() })
        );
    }

    #[test]
    fn a_change_applied_keeps_what_it_does_not_send() {
        let before = current(Some(1), Some(Toggle::Enabled));
        let change = Change { hop_limit: Some(hl(2)), http_tokens: Some(HttpTokens::Required), ..Change::default() };
        let expected = change.applied_to(&before);
        assert_eq!(expected.hop_limit, Some(hl(2)));
        assert_eq!(expected.http_tokens, Some(HttpTokens::Required));
        assert_eq!(expected.http_endpoint, Some(Toggle::Enabled));
        assert_eq!(expected.instance_tags, Some(Toggle::Disabled));
        assert_eq!(expected.state, Some(State::Applied), "the state is before's; EC2's answer says pending");
    }

    #[test]
    fn or_fills_only_what_is_missing() {
        let partial =
            MetadataOptions { state: Some(State::Pending), hop_limit: Some(hl(3)), ..MetadataOptions::default() };
        let full = current(Some(1), Some(Toggle::Enabled));
        let merged = partial.or(&full);
        assert_eq!(merged.state, Some(State::Pending));
        assert_eq!(merged.hop_limit, Some(hl(3)));
        assert_eq!(merged.http_endpoint, Some(Toggle::Enabled));
        assert_eq!(merged.http_tokens, Some(HttpTokens::Optional));
        assert_eq!(MetadataOptions::default().or(&MetadataOptions::default()), MetadataOptions::default());
    }

    #[test]
    fn in_effect_needs_right_values_and_no_pending_state() {
        let mut cur = current(Some(2), Some(Toggle::Enabled));
        assert_eq!(decide(&cur, &wanted(2)), Decision::InEffect);
        cur.state = Some(State::Pending);
        assert_eq!(decide(&cur, &wanted(2)), Decision::Pending);
        cur.state = None;
        assert_eq!(decide(&cur, &wanted(2)), Decision::InEffect);
        cur.hop_limit = Some(hl(1));
        cur.state = Some(State::Applied);
        assert_eq!(decide(&cur, &wanted(2)), Decision::Change(Change { hop_limit: Some(hl(2)), ..Change::default() }));
    }

    #[test]
    fn each_decision_under_each_intent() {
        use Intent::*;
        let change = Change { hop_limit: Some(hl(2)), ..Change::default() };
        let apply = Apply { wait: true };
        let no_wait = Apply { wait: false };
        let cases = [
            (Decision::InEffect, Check, Step::Nothing),
            (Decision::InEffect, apply, Step::Nothing),
            (Decision::Pending, Check, Step::NotCompliant),
            (Decision::Pending, DryRun, Step::NotCompliant),
            (Decision::Pending, no_wait, Step::LeavePending),
            (Decision::Pending, apply, Step::SeeThrough),
            (Decision::Change(change), Check, Step::NotCompliant),
            (Decision::Change(change), DryRun, Step::Send { change, dry_run: true }),
            (Decision::Change(change), no_wait, Step::Send { change, dry_run: false }),
            (Decision::Change(change), apply, Step::Send { change, dry_run: false }),
        ];
        for (decision, intent, expected) in cases {
            assert_eq!(step(decision, intent), expected, "{decision:?} {intent:?}");
        }
    }

    #[test]
    fn verdicts_of_a_wait() {
        let w = wanted(2);
        let expected = current(Some(2), Some(Toggle::Enabled));
        let read = |hop, state| MetadataOptions { state: Some(state), hop_limit: Some(hl(hop)), ..expected.clone() };
        let running = InstanceState::Running;
        assert_eq!(verdict(running, &read(2, State::Applied), &expected, &w), Verdict::Applied);
        assert_eq!(verdict(running, &read(2, State::Pending), &expected, &w), Verdict::Waiting);
        assert_eq!(verdict(running, &read(1, State::Applied), &expected, &w), Verdict::Waiting);
        let stopped = InstanceState::Stopped;
        assert_eq!(verdict(stopped, &read(2, State::Pending), &expected, &w), Verdict::AppliesAtStart);
        assert_eq!(verdict(stopped, &read(1, State::Pending), &expected, &w), Verdict::Waiting);
        assert_eq!(verdict(InstanceState::Terminated, &read(2, State::Applied), &expected, &w), Verdict::Gone);
        // moto's way: only the state and the fields sent come back; the rest is as expected.
        let sparse = MetadataOptions { state: Some(State::Applied), hop_limit: Some(hl(2)), ..Default::default() };
        assert_eq!(verdict(running, &sparse, &expected, &w), Verdict::Applied);
        // A state left out is never `applied`.
        let stateless = MetadataOptions { state: None, ..read(2, State::Applied) };
        assert_eq!(verdict(running, &stateless, &expected, &w), Verdict::Waiting);
    }
}
