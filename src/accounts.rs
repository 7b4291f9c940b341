//! Which accounts fleet and defaults work in: the credentials' own account (the default), or the accounts given
//! (`--accounts`, `--accounts-file`) or listed by the organization (`--organization`), each entered through
//! `--role-name` except the credentials' own, which is worked with the credentials themselves (a management
//! account has no OrganizationAccountAccessRole). `runner` runs over them.

use crate::cli::AccountsArgs;
use crate::ec2::{Account, Caller};
use crate::error::{Error, Result};
use crate::ids::{AccountId, ExternalId, RoleName};
use std::collections::HashSet;
use tokio::time::Instant;

/// Which accounts a run works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accounts {
    /// The credentials' own, the only one (no STS or Organizations call at all).
    Own,
    /// These, each once, in the order given.
    Given(Vec<AccountId>),
    /// Every ACTIVE account of the organization.
    Organization,
}

/// How the run enters the accounts it works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub accounts: Accounts,
    /// The role assumed in each account but the credentials' own; set whenever `accounts` is not `Own`.
    pub role: Option<RoleName>,
    pub external_id: Option<ExternalId>,
    /// How many accounts are worked on at once.
    pub at_once: usize,
    /// `--timeout` as given, named by the message of an STS or Organizations call that its deadline ended.
    pub timeout: Option<std::time::Duration>,
}

/// An account the run works in. `id` is `None` for the credentials' own account when the run is not
/// org-wide: it is not looked up (that would cost an STS call for nothing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Member {
    #[serde(rename = "account_id")]
    pub id: Option<AccountId>,
    /// The organization's name for it, where listed (sanitized remote text).
    pub name: Option<String>,
}

impl Member {
    /// How a table names it: its name where known, else its id.
    pub fn label(&self) -> Option<String> {
        self.name.clone().or_else(|| self.id.as_ref().map(ToString::to_string))
    }
}

/// An account the run could not work in: its role not assumed, its regions not resolved, or not reached
/// before the run ended. None of its instances are in the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountFailure {
    #[serde(flatten)]
    pub member: Member,
    pub error: String,
    #[serde(skip)]
    pub code: crate::exit::ExitCode,
}

/// The most accounts one run reads from a file or the organization (AWS Organizations allows 10,000 by
/// default; a raised quota rarely more).
pub const MAX_ACCOUNTS: usize = 50_000;
/// The most pages of ListAccounts (20 accounts each): a bound on a listing whose tokens never end.
const MAX_PAGES: usize = MAX_ACCOUNTS / 20 + 1;

impl Settings {
    pub fn from_args(args: &AccountsArgs, timeout: Option<std::time::Duration>) -> Result<Self> {
        let mut ids = args.accounts.clone();
        if let Some(file) = &args.accounts_file {
            ids.extend(read_accounts_file(file)?);
        }
        let accounts = match (args.organization, ids.is_empty()) {
            (true, false) => {
                return Err(Error::Usage(
                    "--organization lists the accounts itself: drop --accounts and --accounts-file, or it".into(),
                ));
            }
            (true, true) => Accounts::Organization,
            (false, false) => {
                let mut seen = HashSet::new();
                ids.retain(|id| seen.insert(id.clone()));
                Accounts::Given(ids)
            }
            (false, true) if args.accounts_file.is_some() => {
                return Err(Error::Usage("--accounts-file names no account".into()));
            }
            (false, true) => Accounts::Own,
        };
        match (&accounts, &args.role_name) {
            (Accounts::Own, Some(_)) => {
                return Err(Error::Usage(
                    "--role-name is the role assumed in the accounts of --organization, --accounts or --accounts-file: \
                     give one of them, or drop --role-name"
                        .into(),
                ));
            }
            (Accounts::Given(_) | Accounts::Organization, None) => {
                return Err(Error::Usage(
                    "--organization, --accounts and --accounts-file need --role-name: the role assumed in each \
                     account (packaging/org/ has one to deploy as a StackSet)"
                        .into(),
                ));
            }
            _ => {}
        }
        if args.external_id.is_some() && args.role_name.is_none() {
            return Err(Error::Usage("--external-id goes with --role-name".into()));
        }
        Ok(Settings {
            accounts,
            role: args.role_name.clone(),
            external_id: args.external_id.clone(),
            at_once: usize::from(args.accounts_at_once),
            timeout,
        })
    }

    pub fn org_wide(&self) -> bool {
        self.accounts != Accounts::Own
    }

    /// Where a run over these accounts is, for the message of a deadline or signal that ends it: org-wide it
    /// may be calling any of STS, Organizations and EC2, in several accounts at once.
    pub fn stage(&self) -> crate::process::signal::Stage {
        if self.org_wide() { crate::process::signal::Stage::Accounts } else { crate::process::signal::Stage::Ec2 }
    }

    /// The accounts to work in, with the credentials to enter them with: the caller's, and who they are
    /// (org-wide only: sts:GetCallerIdentity).
    pub async fn roster(&self, caller: Account, deadline: Instant) -> Result<Roster> {
        let named = self.naming(deadline);
        let members = match &self.accounts {
            Accounts::Own => return Ok(Roster { members: vec![Member { id: None, name: None }], caller, who: None }),
            Accounts::Given(ids) => ids.iter().map(|id| Member { id: Some(id.clone()), name: None }).collect(),
            Accounts::Organization => organization(&caller, deadline).await.map_err(named)?,
        };
        let who = caller.caller(deadline).await.map_err(self.naming(deadline))?;
        tracing::debug!(accounts = members.len(), caller = %who.account, "accounts");
        Ok(Roster { members, caller, who: Some(who) })
    }

    /// The credentials to work in `member` with: the caller's own in its own account (and when the run is not
    /// org-wide), else `--role-name` assumed there.
    pub async fn enter(&self, roster: &Roster, member: &Member, deadline: Instant) -> Result<Account> {
        let (Some(who), Some(id), Some(role)) = (&roster.who, &member.id, &self.role) else {
            return Ok(roster.caller.clone());
        };
        if *id == who.account {
            return Ok(roster.caller.clone());
        }
        let arn = format!("arn:{}:iam::{id}:role/{role}", who.partition);
        let named = self.naming(deadline);
        roster.caller.assume(&arn, self.external_id.as_ref(), deadline).await.map_err(named)
    }

    /// Where the run's deadline bounds a call made now (it comes before the call's own patience), the error it
    /// ends in names `--timeout` as given, as EC2's calls' do.
    fn naming(&self, deadline: Instant) -> impl FnOnce(Error) -> Error + use<> {
        let limit = self.timeout.filter(|_| crate::wait::patience(deadline) == deadline);
        move |err| err.at_deadline(limit)
    }
}

/// The accounts a run works in, and the credentials it enters them with.
pub struct Roster {
    pub members: Vec<Member>,
    /// The credentials the run was given (the default chain's).
    pub caller: Account,
    /// Who they are, where the run is org-wide.
    who: Option<Caller>,
}

/// Every ACTIVE account of the organization, in the order listed, each once.
async fn organization(caller: &Account, deadline: Instant) -> Result<Vec<Member>> {
    let mut members = Vec::new();
    let mut seen_ids = HashSet::new();
    let mut seen_tokens = HashSet::new();
    let mut next: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = caller.accounts_page(next.as_deref(), deadline).await?;
        for listed in page.accounts.into_iter().filter(|a| a.active) {
            if seen_ids.insert(listed.id.clone()) {
                members.push(Member { id: Some(listed.id), name: listed.name });
            }
        }
        match page.next {
            None if members.is_empty() => {
                return Err(Error::Organization(
                    "--organization: organizations:ListAccounts listed no ACTIVE account to work in".into(),
                ));
            }
            None => return Ok(members),
            Some(token) if !seen_tokens.insert(token.clone()) => {
                return Err(Error::Unexpected(format!(
                    "organizations:ListAccounts answered a page token it had answered before, after {} pages: the \
                     listing would never end",
                    seen_tokens.len()
                )));
            }
            Some(token) => next = Some(token),
        }
        if members.len() > MAX_ACCOUNTS {
            break;
        }
    }
    Err(Error::Unexpected(format!(
        "organizations:ListAccounts did not end within {MAX_PAGES} pages ({MAX_ACCOUNTS} accounts)"
    )))
}

/// One id a line; blank lines and `#` comments (whole lines, or after an id) are skipped.
fn read_accounts_file(path: &std::path::Path) -> Result<Vec<AccountId>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("--accounts-file {}: {}", path.display(), e.kind())))?;
    parse_accounts(&text).map_err(|e| Error::Usage(format!("--accounts-file {}: {e}", path.display())))
}

fn parse_accounts(text: &str) -> std::result::Result<Vec<AccountId>, String> {
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.split('#').next().unwrap_or_default().trim();
        if id.is_empty() {
            continue;
        }
        ids.push(id.parse::<AccountId>().map_err(|e| format!("line {}: {e}", n + 1))?);
        if ids.len() > MAX_ACCOUNTS {
            return Err(format!("more than {MAX_ACCOUNTS} accounts"));
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn settings(args: &[&str]) -> Result<Settings> {
        let mut argv = vec!["imds-hop-limit", "fleet", "check", "--region", "us-west-2"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).map_err(|e| Error::Usage(e.to_string()))?;
        let Some(crate::cli::Command::Fleet(fleet)) = &cli.command else { panic!() };
        Settings::from_args(&fleet.accounts, None)
    }

    #[test]
    fn accounts_come_from_the_flags_each_once_with_a_role() {
        assert_eq!(settings(&[]).unwrap().accounts, Accounts::Own);
        let s =
            settings(&["--accounts", "111111111111,222222222222", "--accounts", "111111111111", "--role-name", "r"])
                .unwrap();
        assert_eq!(s.accounts, Accounts::Given(vec!["111111111111".into(), "222222222222".into()]));
        assert_eq!(s.role, Some("r".into()));
        assert_eq!(s.at_once, 4, "the default bound");
        let s = settings(&["--organization", "--role-name", "r", "--external-id", "xyz", "--accounts-at-once", "9"])
            .unwrap();
        assert_eq!((s.accounts, s.at_once), (Accounts::Organization, 9));
    }

    #[test]
    fn bad_accounts_are_usage_errors_saying_why() {
        for (bad, why) in [
            (&["--accounts", "12345", "--role-name", "r"][..], "12 digits"),
            (&["--accounts", "111111111111", "--role-name", "a/b"], "IAM role name"),
            (&["--accounts", "111111111111", "--organization", "--role-name", "r"], "cannot be used with"),
            (&["--organization"], "need --role-name"),
            (&["--accounts", "111111111111"], "need --role-name"),
            (&["--role-name", "r"], "give one of them"),
            (&["--accounts", "111111111111", "--role-name", "r", "--external-id", "a b"], "external id"),
            (&["--organization", "--role-name", "r", "--accounts-at-once", "0"], "0"),
        ] {
            match settings(bad) {
                Err(Error::Usage(msg)) => assert!(msg.contains(why), "{bad:?}: {msg}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn an_accounts_file_is_one_id_a_line_with_comments() {
        let text = "# the web team's\n111111111111\n\n  222222222222  # prod\n111111111111\n";
        let ids = parse_accounts(text).unwrap();
        assert_eq!(ids, ["111111111111", "222222222222", "111111111111"].map(AccountId::from));
        let err = parse_accounts("111111111111\n12345678901x\n").unwrap_err();
        assert!(err.starts_with("line 2:") && err.contains("12 digits"), "{err}");
    }

    #[test]
    fn members_are_labelled_by_name_else_id() {
        let m = Member { id: Some("111111111111".into()), name: None };
        assert_eq!(m.label().as_deref(), Some("111111111111"));
        let named = Member { name: Some("web-prod".into()), ..m };
        assert_eq!(named.label().as_deref(), Some("web-prod"));
        assert_eq!(Member { id: None, name: None }.label(), None);
    }
}
