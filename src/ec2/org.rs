//! The accounts side of the org-wide commands: who the credentials are (sts:GetCallerIdentity), the
//! organization's accounts (organizations:ListAccounts, a page at a time), and a member account's credentials
//! (sts:AssumeRole, asked once before its regions are worked on, then refreshed by the SDK as they expire).

use super::classify::classify;
use super::{Account, proxy_for};
use crate::ec2::failures::Service;
use crate::error::{Error, Result};
use crate::ids::{AccountId, ExternalId};
use crate::remote;
use crate::retry::Patient;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use std::sync::Mutex;
use tokio::time::Instant;

/// The session name every assumed role carries, so that CloudTrail says which tool it was.
pub const SESSION: &str = "imds-hop-limit";

/// Who the credentials are: their account, and its partition (for the member roles' ARNs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub account: AccountId,
    pub partition: String,
}

/// One account of the organization's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: AccountId,
    /// As the organization names it, sanitized (one line, bounded): remote text.
    pub name: Option<String>,
    /// ACTIVE (not suspended, not closing).
    pub active: bool,
}

/// One page of the organization's accounts, and the token of the next, if any.
#[derive(Debug, Clone, Default)]
pub struct AccountsPage {
    pub accounts: Vec<Listed>,
    pub next: Option<String>,
}

impl Account {
    /// The STS and Organizations clients' settings: the account's, in its default region or us-east-1.
    fn global(&self) -> aws_config::SdkConfig {
        let region = self.default_region().unwrap_or_else(|| "us-east-1".into());
        self.sdk.to_builder().region(aws_config::Region::new(region)).build()
    }

    /// The STS client, and the proxy its calls go through (to name it when it fails).
    fn sts(&self) -> (aws_sdk_sts::Client, Option<String>) {
        let global = self.global();
        let proxy = proxy_for(&crate::config::endpoint(Service::Sts, &region_of(&global)));
        (aws_sdk_sts::Client::new(&global), proxy)
    }

    pub async fn caller(&self, deadline: Instant) -> Result<Caller> {
        let (client, proxy) = self.sts();
        let answer = call(&client, Service::Sts, "GetCallerIdentity", proxy.as_deref(), deadline, |c| {
            c.get_caller_identity().send()
        })
        .await?;
        let account = answer.account().unwrap_or_default().parse::<AccountId>().map_err(|e| {
            Error::Unexpected(format!("sts:GetCallerIdentity answered an account id that is not one: {e}"))
        })?;
        // arn:PARTITION:sts::ACCOUNT:...; a partition is lowercase letters and dashes (aws, aws-cn, aws-us-gov).
        let partition = answer
            .arn()
            .and_then(|arn| arn.split(':').nth(1))
            .filter(|p| !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
            .unwrap_or("aws")
            .to_string();
        Ok(Caller { account, partition })
    }

    /// One page of organizations:ListAccounts, from `next` on. An account outside any organization, or
    /// credentials that may not list it, end the run with their own exit code.
    pub async fn accounts_page(&self, next: Option<&str>, deadline: Instant) -> Result<AccountsPage> {
        let global = self.global();
        let proxy = proxy_for(&crate::config::endpoint(Service::Organizations, &region_of(&global)));
        let client = aws_sdk_organizations::Client::new(&global);
        let next = next.map(str::to_string);
        let answer = call(&client, Service::Organizations, "ListAccounts", proxy.as_deref(), deadline, |c| {
            c.list_accounts().set_next_token(next.clone()).send()
        })
        .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(Error::Call { failure, .. })
                if failure.code.as_deref() == Some("AWSOrganizationsNotInUseException") =>
            {
                return Err(Error::Organization(
                    "--organization: these credentials' account is not in an AWS Organization \
                     (AWSOrganizationsNotInUseException); name the accounts with --accounts or --accounts-file"
                        .into(),
                ));
            }
            Err(Error::Call { failure, .. }) if failure.denied() => {
                return Err(Error::Organization(format!(
                    "--organization: organizations:ListAccounts was refused ({failure}): list the accounts from the \
                     organization's management account or a delegated administrator, with \
                     packaging/org/caller-policy.json, or name them with --accounts"
                )));
            }
            Err(other) => return Err(other),
        };
        let mut accounts = Vec::new();
        for listed in answer.accounts() {
            let id = listed.id().unwrap_or_default().parse::<AccountId>().map_err(|e| {
                Error::Unexpected(format!("organizations:ListAccounts answered an account id that is not one: {e}"))
            })?;
            let active = listed.status().is_some_and(|s| s.as_str() == "ACTIVE");
            let name = listed.name().map(|n| remote::sanitize(n, 50)).filter(|n| !n.is_empty());
            accounts.push(Listed { id, name, active });
        }
        let next = match answer.next_token() {
            None | Some("") => None,
            // Written back into the next request: only what has a token's shape.
            Some(token) if token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(token.to_string())
            }
            Some(token) => {
                return Err(Error::Unexpected(format!(
                    "organizations:ListAccounts answered a next token of {} bytes that is not one",
                    token.len()
                )));
            }
        };
        Ok(AccountsPage { accounts, next })
    }

    /// The account behind `role_arn`, entered with these credentials: sts:AssumeRole once now (a refusal is
    /// that account's failure, with its reason), then again by the SDK whenever the credentials near expiry.
    pub async fn assume(&self, role_arn: &str, external_id: Option<&ExternalId>, deadline: Instant) -> Result<Account> {
        let (client, proxy) = self.sts();
        let external = external_id.map(|e| e.as_str().to_string());
        let answer = call(&client, Service::Sts, "AssumeRole", proxy.as_deref(), deadline, |c| {
            c.assume_role().role_arn(role_arn).role_session_name(SESSION).set_external_id(external.clone()).send()
        })
        .await
        .map_err(|err| match err {
            Error::Call { failure, .. } => Error::AssumeRole { role_arn: role_arn.to_string(), failure },
            other => other,
        })?;
        let Some(first) = answer.credentials() else {
            return Err(Error::Unexpected(format!("sts:AssumeRole of {role_arn} answered no credentials")));
        };
        let expiry = std::time::SystemTime::try_from(*first.expiration()).ok();
        let first = Credentials::new(
            first.access_key_id(),
            first.secret_access_key(),
            Some(first.session_token().to_string()),
            expiry,
            "imds-hop-limit sts:AssumeRole",
        );
        let mut then = aws_config::sts::AssumeRoleProvider::builder(role_arn).session_name(SESSION);
        if let Some(external) = external {
            then = then.external_id(external);
        }
        let then = then.configure(&self.global()).build().await;
        let provider = Assumed { first: Mutex::new(Some(first)), then };
        Ok(Account {
            sdk: self.sdk.to_builder().credentials_provider(SharedCredentialsProvider::new(provider)).build(),
        })
    }
}

/// An assumed role's credentials: the first AssumeRole's answer, then a new AssumeRole each time the SDK's
/// cache finds them near expiry.
#[derive(Debug)]
struct Assumed {
    first: Mutex<Option<Credentials>>,
    then: aws_config::sts::AssumeRoleProvider,
}

impl ProvideCredentials for Assumed {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        match self.first.lock().ok().and_then(|mut first| first.take()) {
            Some(first) => future::ProvideCredentials::ready(Ok(first)),
            None => self.then.provide_credentials(),
        }
    }
}

fn region_of(config: &aws_config::SdkConfig) -> String {
    config.region().map(ToString::to_string).unwrap_or_default()
}

/// One STS or Organizations call, retried as every AWS call is (`Patient::retry`: while what fails may heal,
/// for `CALL_PATIENCE` or until `deadline`, if sooner), its failures classified as every AWS call's are (a
/// clock corrected, a proxy named, credentials that cannot be had said as for EC2). The run's deadline
/// itself ends the run wherever it is (`process::within`), as for every service.
async fn call<'a, C, T, E, Fut>(
    client: &'a C,
    service: Service,
    operation: &'static str,
    proxy: Option<&str>,
    deadline: Instant,
    send: impl Fn(&'a C) -> Fut,
) -> Result<T>
where
    Fut: Future<Output = std::result::Result<T, SdkError<E, aws_sdk_ec2::config::http::HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let until = crate::wait::patience(deadline);
    Patient::new(client)
        .retry(operation, until, |c| {
            let answer = send(c);
            async move { answer.await.map_err(|err| classify(service, operation, &err, proxy)) }
        })
        .await
}
