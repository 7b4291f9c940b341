//! STS and Organizations, served beside EC2 for the org-wide commands: sts:GetCallerIdentity, sts:AssumeRole
//! into the organization's member accounts (whose credentials then select the member's instances and budget,
//! as on AWS), and organizations:ListAccounts in pages of 20 (JSON, as Organizations speaks it).

use super::*;

const STS_XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// The answer to an STS or Organizations request, signature checked; `None` for an EC2 request.
pub(super) fn answer(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    params: &[(String, String)],
    s: &mut State,
) -> Option<Reply> {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let organizations = target.starts_with("AWSOrganizationsV20161128.");
    let sts = matches!(param("Action"), Some("AssumeRole" | "GetCallerIdentity"));
    if !organizations && !sts {
        return None;
    }
    let (key, _) = match verify(parts, body, s) {
        Ok(signed) => signed,
        Err(answer) => return Some(answer),
    };
    let action = param("Action").unwrap_or_else(|| target.rsplit('.').next().unwrap_or_default());
    if s.scenario.ec2(|f| if let Ec2Fault::ThrottleActions(a) = f { Some(a.contains(&action)) } else { None })
        == Some(true)
    {
        return Some(if organizations {
            let message =
                "AWS Organizations can't complete your request because another request is already in progress.";
            reply(
                400,
                "application/x-amz-json-1.1",
                serde_json::json!({ "__type": "TooManyRequestsException", "Message": message }).to_string(),
            )
        } else {
            sts_error(400, "Throttling", "Rate exceeded")
        });
    }
    if sts && s.scenario.ec2_is(&Ec2Fault::StsNotXml) {
        return Some(reply(200, "text/plain", "OK, but not what STS says".to_string()));
    }
    // Who the key is: a member's assumed role, or this account's own credentials.
    let caller = s.issued.iter().find(|i| i.key == key).and_then(|i| i.account.clone());
    let caller = caller.unwrap_or_else(|| ACCOUNT.to_string());
    Some(if organizations {
        list_accounts(target, body, &caller, s)
    } else if param("Action") == Some("GetCallerIdentity") {
        reply(
            200,
            XML,
            format!(
                "<GetCallerIdentityResponse xmlns=\"{STS_XMLNS}\"><GetCallerIdentityResult><Arn>arn:aws:iam::{caller}:user/sim</Arn><UserId>AIDASIMUSER</UserId><Account>{caller}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
            ),
        )
    } else {
        assume_role(param("RoleArn").unwrap_or_default(), &caller, s)
    })
}

fn sts_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        XML,
        format!(
            "<ErrorResponse xmlns=\"{STS_XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>sim</RequestId></ErrorResponse>",
            xml_escape(message)
        ),
    )
}

/// A member account's role, assumed: new credentials that act in that account. Refused (AccessDenied, as STS
/// says it for a role that does not exist, does not trust the caller, or that an SCP denies) for an account
/// not in the organization or whose role the scenario refuses.
fn assume_role(arn: &str, caller: &str, s: &mut State) -> Reply {
    let account = arn.strip_prefix("arn:aws:iam::").and_then(|rest| rest.split(':').next()).unwrap_or_default();
    let known = s.members.contains_key(account);
    if s.scenario.ec2(|f| if let Ec2Fault::StsRegionDisabled(a) = f { Some(*a == account) } else { None }) == Some(true)
    {
        return sts_error(
            403,
            "RegionDisabledException",
            &format!(
                "STS is not activated in this region for account:{account}. Your account administrator can activate STS in this region using the IAM Console."
            ),
        );
    }
    if !known || s.scenario.policy.refuse_roles.iter().any(|r| r == account) {
        return sts_error(
            403,
            "AccessDenied",
            &format!(
                "User: arn:aws:iam::{caller}:user/sim is not authorized to perform: sts:AssumeRole on resource: {arn}"
            ),
        );
    }
    let key = format!("ASIA{}", s.secret("KEY"));
    let secret = s.secret("SECRET");
    let session = s.secret("SESSION");
    s.issued.push(Issued {
        key: key.clone(),
        secret: secret.clone(),
        session: session.clone(),
        account: Some(account.to_string()),
    });
    let expires = rfc3339(SystemTime::now() + Duration::from_secs(3600));
    reply(
        200,
        XML,
        format!(
            "<AssumeRoleResponse xmlns=\"{STS_XMLNS}\"><AssumeRoleResult><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey><SessionToken>{session}</SessionToken><Expiration>{expires}</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::{account}:assumed-role/sim/imds-hop-limit</Arn><AssumedRoleId>AROASIM:imds-hop-limit</AssumedRoleId></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></AssumeRoleResponse>"
        ),
    )
}

/// The organization's accounts, the management account (this one) first, 20 a page.
fn list_accounts(target: &str, body: &[u8], caller: &str, s: &State) -> Reply {
    const JSON: &str = "application/x-amz-json-1.1";
    let error = |status: u16, kind: &str, message: &str| {
        reply(status, JSON, serde_json::json!({ "__type": kind, "Message": message }).to_string())
    };
    if target != "AWSOrganizationsV20161128.ListAccounts" {
        return error(400, "InvalidInputException", "not an operation this simulator serves");
    }
    let Some(members) = &s.scenario.organization else {
        return error(400, "AWSOrganizationsNotInUseException", "Your account is not a member of an organization.");
    };
    if caller != ACCOUNT {
        return error(400, "AccessDeniedException", "You don't have permissions to access this resource.");
    }
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let token = request["NextToken"].as_str();
    let mut all = vec![serde_json::json!({ "Id": ACCOUNT, "Name": "management", "Status": "ACTIVE" })];
    all.extend(members.iter().map(
        |m| serde_json::json!({ "Id": m.id, "Name": m.name, "Status": if m.active { "ACTIVE" } else { "SUSPENDED" } }),
    ));
    if s.scenario.ec2_is(&Ec2Fault::AccountsPageCycle) {
        let next = if token == Some("A") { "B" } else { "A" };
        return reply(200, JSON, serde_json::json!({ "Accounts": all[..1], "NextToken": next }).to_string());
    }
    let start: usize = token.and_then(|t| t.parse().ok()).unwrap_or(0);
    let end = (start + 20).min(all.len());
    let mut answer = serde_json::json!({ "Accounts": all.get(start..end).unwrap_or_default() });
    if end < all.len() {
        answer["NextToken"] = end.to_string().into();
    }
    reply(200, JSON, answer.to_string())
}
