//! The EC2 Query API side, per action: DescribeInstances, ModifyInstanceMetadataOptions, DescribeRegions, the
//! account-level defaults; EC2's errors and XML answers, and the faults of each.

use super::*;

/// An encoded authorization message of the shape EC2 gives: URL-safe base64, hundreds of characters.
pub const ENCODED: &str = "SIMENCODED-UvImZaYMEtKJGF2VDuiBNgkWb2sRPReNbA_TkB_yOaGglfIPk5VlDPk4C47bIkprJIoekk6P0K4uGpSSozBfGIy2EJAPnjR_rohtxlB3lex0XEw_yy6yxz4Uk0yGfuBXunJJm_oSHoNrKsFXJu59awr2qxPDjpLK4NFQV7FZmH-UzHQR1xfxRXmyqhAPu7NPpZP-rtJySLdi46tYBfB2WiucHX4PN8RJIb0_ZWTq338UKnJm";

pub(super) fn ec2_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>5e2a7c3d-0b1f-4e8a-9c6d-7f8e9a0b1c2d</RequestID></Response>",
            xml_escape(message)
        ),
    )
}

/// EC2's refusal, naming the kind of policy that refused as EC2 does (`refused_by`: "with an explicit deny
/// in a service control policy", ...; by default no identity-based policy allows the action).
pub(super) fn unauthorized(action: &str, encoded: &str, refused_by: Option<&str>) -> Reply {
    let why = refused_by
        .map_or_else(|| format!("because no identity-based policy allows the ec2:{action} action"), str::to_string);
    ec2_error(
        403,
        "UnauthorizedOperation",
        &format!(
            "You are not authorized to perform this operation. User: arn:aws:sts::{ACCOUNT}:assumed-role/{ROLE}/{INSTANCE_ID} is not authorized to perform: ec2:{action} on resource: arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{INSTANCE_ID} {why}. Encoded authorization failure message: {encoded}"
        ),
    )
}

/// The EC2 side's answer, STS's and Organizations' included (they are served beside it); EC2's own in the
/// account the signing key acts in (`member`, `State::member_of`: a member account's, for an assumed role's
/// key).
pub(super) fn ec2(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    params: &[(String, String)],
    member: Option<&str>,
    s: &mut State,
) -> Reply {
    if let Some(answer) = super::org::answer(parts, body, params, s) {
        return answer;
    }
    let Some(member) = member else { return in_account(parts, body, params, s) };
    // The member's instances and budget stand in for this account's while its request is answered.
    let Some((member, mut account)) = s.members.remove_entry(member) else {
        return in_account(parts, body, params, s);
    };
    std::mem::swap(&mut s.account, &mut account);
    let answer = in_account(parts, body, params, s);
    std::mem::swap(&mut s.account, &mut account);
    s.members.insert(member, account);
    answer
}

fn in_account(parts: &hyper::http::request::Parts, body: &[u8], params: &[(String, String)], s: &mut State) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let now = Instant::now();
    s.account.settle(now);
    if parts.uri.path().starts_with("/latest/") {
        // An IMDS request that went through a proxy: a proxy on EC2 would answer with its own metadata.
        return reply(403, TEXT, "Forbidden: metadata requests must not go through a proxy");
    }
    if let Some(status) = s.scenario.ec2(|f| if let Ec2Fault::EchoErrorPage(n) = f { Some(*n) } else { None }) {
        let page = format!(
            "<html><head><title>{status}</title></head><body><h1>Request rejected</h1><pre>{}</pre></body></html>",
            echo(parts, body)
        );
        return reply(status, "text/html", page);
    }
    if s.scenario.ec2_is(&Ec2Fault::EchoOkNotXml) {
        return reply(200, "text/plain", format!("OK\n{}", echo(parts, body)));
    }
    if let Some(size) = s.scenario.ec2(|f| if let Ec2Fault::HugeAnswer(n) = f { Some(*n) } else { None }) {
        return reply(500, "text/html", "Z9".repeat(size / 2));
    }
    let (key, region) = match verify(parts, body, s) {
        Ok(signed) => signed,
        Err(answer) => {
            if s.scenario.ec2_is(&Ec2Fault::SkewKeepsMoving) && answer.status() == 400 {
                s.clock_ahead += Duration::from_secs(3600);
            }
            return answer;
        }
    };
    if s.scenario.ec2_is(&Ec2Fault::EchoRequestId) {
        let mut r = ec2_error(400, "InvalidRequest", "The request is invalid.");
        *r.body_mut() = Full::new(Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>InvalidRequest</Code><Message>The request is invalid.</Message></Error></Errors><RequestID>{key}</RequestID></Response>"
        )));
        r.headers_mut().insert("x-amzn-requestid", key.parse().unwrap());
        return r;
    }
    // The encoded authorization message: EC2's, or the signing key ten times over (URL-safe base64 in shape,
    // long enough to look like one).
    let encoded = if s.scenario.ec2_is(&Ec2Fault::EchoEncodedMessage) { key.repeat(10) } else { ENCODED.to_string() };
    if s.scenario.ec2_is(&Ec2Fault::EchoInMessage) {
        return ec2_error(400, "InvalidRequest", &format!("The request is invalid: {}", echo(parts, body)));
    }
    let action = param("Action").unwrap_or("");
    s.signed += 1;
    if s.scenario.ec2(|f| if let Ec2Fault::ThrottleActions(a) = f { Some(a.contains(&action)) } else { None })
        == Some(true)
    {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if action == "DescribeInstances" && s.modified {
        if let Some(code) =
            s.scenario.ec2(|f| if let Ec2Fault::RefuseReadsAfterModify(c) = f { Some(*c) } else { None })
        {
            return ec2_error(401, code, "The security token included in the request is expired");
        }
    }
    let nth = s.signed - 1;
    if s.scenario.ec2(|f| if let Ec2Fault::ThrottleRequests(r) = f { Some(r.contains(&nth)) } else { None })
        == Some(true)
    {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if !s.account.admit(action, &region, now) {
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if s.throttled < s.scenario.ec2(|f| if let Ec2Fault::ThrottleFirst(n) = f { Some(*n) } else { None }).unwrap_or(0) {
        s.throttled += 1;
        return ec2_error(503, "RequestLimitExceeded", "Request limit exceeded.");
    }
    if s.errored < s.scenario.ec2(|f| if let Ec2Fault::ServerErrorFirst(n) = f { Some(*n) } else { None }).unwrap_or(0)
    {
        s.errored += 1;
        return ec2_error(500, "InternalError", "An internal error has occurred");
    }
    let dry_run = param("DryRun") == Some("true");
    match action {
        "DescribeInstances" | "ModifyInstanceMetadataOptions" => {}
        "DescribeAutoScalingGroups" => return super::templates::groups(&region, s),
        "DescribeLaunchTemplates"
        | "DescribeLaunchTemplateVersions"
        | "CreateLaunchTemplateVersion"
        | "ModifyLaunchTemplate" => {
            let refused = action == "CreateLaunchTemplateVersion"
                && s.scenario.policy.refuse_templates.contains(&param("LaunchTemplateId").unwrap_or_default());
            if s.scenario.policy.unauthorized.contains(&action) || refused {
                return unauthorized(action, &encoded, s.scenario.policy.refused_by);
            }
            if dry_run {
                return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
            }
            return super::templates::answer(action, params, &region, s);
        }
        "DescribeRegions" | "GetInstanceMetadataDefaults" | "ModifyInstanceMetadataDefaults" => {
            if s.scenario.policy.unauthorized.contains(&action) {
                return unauthorized(action, &encoded, s.scenario.policy.refused_by);
            }
            if dry_run {
                return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
            }
            return account_action(action, params, &region, s);
        }
        _ => return ec2_error(400, "InvalidAction", "The action is not valid for this web service."),
    }
    if action == "DescribeInstances" {
        if s.scenario.policy.unauthorized.contains(&action) {
            return unauthorized(action, &encoded, s.scenario.policy.refused_by);
        }
        if dry_run {
            return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
        }
        let query = Query::from_params(params);
        let first = query.ids.first().cloned().unwrap_or_default();
        if s.scenario.ec2_is(&Ec2Fault::MalformedDescribe) {
            return reply(
                200,
                "text/xml",
                format!(
                    "<DescribeInstancesResponse><reservationSet><item><instancesSet><item><instanceId>{first}</instanceId><metadataOptions><httpPutResponseHopLimit>two</httpPutResponseHopLimit>"
                ),
            );
        }
        if s.scenario.ec2_is(&Ec2Fault::TruncatedDescribe) {
            return reply(200, "text/xml", "<DescribeInstancesResponse><reservationSet><item>");
        }
        if let Some(bad) = query.ids.iter().find(|id| !well_formed(id)) {
            return ec2_error(400, "InvalidInstanceID.Malformed", &format!("Invalid id: \"{bad}\""));
        }
        let (ids, mut next) = match select(&s.account, &region, &query) {
            Ok(page) => page,
            Err((code, message)) => return ec2_error(400, &code, &message),
        };
        if s.scenario.ec2_is(&Ec2Fault::PageTokenCycle) && query.max_results.is_some() {
            next = Some(if query.next_token.as_deref() == Some("A") { "B" } else { "A" }.to_string());
        }
        let echo_enums = (s.scenario.ec2_is(&Ec2Fault::EchoInEnums)).then(|| echo(parts, body));
        let reservations: String = ids
            .iter()
            .map(|id| {
                let xml = describe_xml(id, &s.account.instances[id], !s.scenario.ec2_is(&Ec2Fault::NoMetadataOptions));
                match &echo_enums {
                    Some(echo) => forge_enums(&xml, id, echo),
                    None => xml,
                }
            })
            .collect();
        let next = next.map(|t| format!("<nextToken>{t}</nextToken>")).unwrap_or_default();
        return reply(
            200,
            "text/xml;charset=UTF-8",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeInstancesResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><reservationSet>{reservations}</reservationSet>{next}</DescribeInstancesResponse>"
            ),
        );
    }
    let id = param("InstanceId").unwrap_or("").to_string();
    if !well_formed(&id) {
        return ec2_error(400, "InvalidInstanceID.Malformed", &format!("Invalid id: \"{id}\""));
    }
    if s.account.instances.get(&id).is_none_or(|i| i.region != region) {
        return ec2_error(400, "InvalidInstanceID.NotFound", &format!("The instance ID '{id}' does not exist"));
    }
    let over_cap = s.scenario.policy.max_hop_limit.is_some_and(|cap| {
        param("HttpPutResponseHopLimit").and_then(|v| v.parse::<i64>().ok()).is_some_and(|h| h > cap)
    });
    if s.scenario.policy.unauthorized.contains(&action)
        || over_cap
        || s.scenario.policy.unauthorized_instances.contains(&id)
    {
        return unauthorized(action, &encoded, s.scenario.policy.refused_by);
    }
    if dry_run {
        return ec2_error(412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.");
    }
    let instance = s.account.instances[&id].clone();
    // ModifyInstanceMetadataOptions, with EC2's validation; fields not given are kept.
    let mut next = instance.options.clone();
    if let Some(v) = param("HttpPutResponseHopLimit") {
        match v.parse::<i64>() {
            Ok(n) if (1..=64).contains(&n) => next.hop_limit = Some(n),
            _ => {
                return ec2_error(
                    400,
                    "InvalidParameterValue",
                    &format!("The HttpPutResponseHopLimit '{v}' is not valid. Specify a value between 1 and 64."),
                );
            }
        }
    }
    if let Some(answer) = set_fields(&mut next, &param, true, false) {
        return answer;
    }
    s.account.change(&id, next, now);
    s.modified = true;
    if s.scenario.ec2_is(&Ec2Fault::TerminateOnModify) {
        let instance = s.account.instances.get_mut(&id).unwrap();
        instance.run_state = "terminated";
        instance.applied_at = Some(now + UNTIL_STARTED);
    }
    if s.scenario.ec2_is(&Ec2Fault::LoseFirstModifyAnswer) && !s.lost_modify_answer {
        s.lost_modify_answer = true;
        return ec2_error(500, "InternalError", "An internal error has occurred");
    }
    let instance = s.account.instances[&id].clone();
    reply(
        200,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ModifyInstanceMetadataOptionsResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId><instanceId>{id}</instanceId>{}</ModifyInstanceMetadataOptionsResponse>",
            options_xml("instanceMetadataOptions", &instance)
        ),
    )
}

/// DescribeRegions and the account-level metadata defaults of the signed region.
pub(super) fn account_action(action: &str, params: &[(String, String)], region: &str, s: &mut State) -> Reply {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    const XMLNS: &str = "xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"";
    let by_policy = s.scenario.defaults_by_policy.contains(&region);
    match action {
        "DescribeRegions" if s.scenario.ec2_is(&Ec2Fault::RegionsGarbage) => {
            reply(200, "text/html", "<html><body>Sign in to the network</body></html>")
        }
        "DescribeRegions" if s.scenario.ec2_is(&Ec2Fault::NoRegions) => reply(
            200,
            XML,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse {XMLNS}><requestId>sim</requestId><regionInfo/></DescribeRegionsResponse>"
            ),
        ),
        "DescribeRegions" => {
            let items: String = s
                .account
                .regions(&s.scenario)
                .iter()
                .map(|r| {
                    format!("<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint><optInStatus>opt-in-not-required</optInStatus></item>")
                })
                .collect();
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse {XMLNS}><requestId>sim</requestId><regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
                ),
            )
        }
        "GetInstanceMetadataDefaults" => {
            let d = s.account.defaults.get(region).cloned().unwrap_or(NO_PREFERENCE);
            let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
            let managed = if by_policy {
                "<managedBy>declarative-policy</managedBy><managedExceptionMessage>Managed by the organization's declarative policy for EC2 (instance metadata defaults).</managedExceptionMessage>"
            } else {
                "<managedBy>account</managedBy>"
            };
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<GetInstanceMetadataDefaultsResponse {XMLNS}><requestId>sim</requestId><accountLevel>{}{}{}{}{managed}</accountLevel></GetInstanceMetadataDefaultsResponse>",
                    field("httpTokens", d.http_tokens.map(str::to_string)),
                    field("httpPutResponseHopLimit", d.hop_limit.map(|h| h.to_string())),
                    field("httpEndpoint", d.http_endpoint.map(str::to_string)),
                    field("instanceMetadataTags", d.tags.map(str::to_string)),
                ),
            )
        }
        _ => {
            if by_policy {
                return ec2_error(
                    400,
                    "UnsupportedOperation",
                    "The instance metadata defaults are managed by a declarative policy and cannot be modified.",
                );
            }
            let mut next = s.account.defaults.get(region).cloned().unwrap_or(NO_PREFERENCE);
            if let Some(v) = param("HttpPutResponseHopLimit") {
                match v.parse::<i64>() {
                    Ok(-1) => next.hop_limit = None,
                    Ok(n) if (1..=64).contains(&n) => next.hop_limit = Some(n),
                    _ => {
                        return ec2_error(
                            400,
                            "InvalidParameterValue",
                            &format!("Value ({v}) for parameter HttpPutResponseHopLimit is invalid."),
                        );
                    }
                }
            }
            if let Some(answer) = set_fields(&mut next, &param, false, true) {
                return answer;
            }
            s.account.defaults.insert(region.to_string(), next);
            reply(
                200,
                XML,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ModifyInstanceMetadataDefaultsResponse {XMLNS}><requestId>sim</requestId><return>true</return></ModifyInstanceMetadataDefaultsResponse>"
                ),
            )
        }
    }
}

/// The HttpTokens and toggle fields a modify sends, set with EC2's validation (the others are kept), or EC2's
/// refusal of a bad value. `no_preference` (the defaults API) also takes `no-preference`, which unsets a field.
pub(super) fn set_fields<'p>(
    next: &mut Options,
    param: &dyn Fn(&str) -> Option<&'p str>,
    ipv6: bool,
    no_preference: bool,
) -> Option<Reply> {
    const TOGGLE: &[&str] = &["enabled", "disabled"];
    let mut fields: Vec<(&str, &mut Option<&'static str>, &[&'static str])> = vec![
        ("HttpTokens", &mut next.http_tokens, &["optional", "required"]),
        ("HttpEndpoint", &mut next.http_endpoint, TOGGLE),
        ("InstanceMetadataTags", &mut next.tags, TOGGLE),
    ];
    if ipv6 {
        fields.push(("HttpProtocolIpv6", &mut next.ipv6, TOGGLE));
    }
    for (name, slot, allowed) in fields {
        match param(name) {
            None => {}
            Some("no-preference") if no_preference => *slot = None,
            Some(v) => match allowed.iter().find(|a| **a == v) {
                Some(a) => *slot = Some(a),
                None => {
                    return Some(ec2_error(
                        400,
                        "InvalidParameterValue",
                        &format!("Value ({v}) for parameter {name} is invalid."),
                    ));
                }
            },
        }
    }
    None
}

/// Account-level defaults nobody has set.
pub(super) const NO_PREFERENCE: Options =
    Options { http_tokens: None, hop_limit: None, http_endpoint: None, ipv6: None, tags: None };
pub(super) const XML: &str = "text/xml;charset=UTF-8";

/// `i-` and 8 or 17 hex digits, as EC2 checks an instance id before it looks it up.
pub(super) fn well_formed(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| matches!(h.len(), 8 | 17) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `xml` (one reservation) with HttpTokens an echo of the request and 200,000 characters more, and the state
/// name a line break and a forged table row: remote text in fields whose values the agent knows.
pub(super) fn forge_enums(xml: &str, id: &str, echo: &str) -> String {
    let tokens = xml_escape(&format!("{echo}{}", "x".repeat(200_000)));
    let state = format!("running\n{id}  {REGION}  running  2  enabled  changed, applied");
    let xml = match (xml.find("<httpTokens>"), xml.find("</httpTokens>")) {
        (Some(a), Some(b)) => format!("{}<httpTokens>{tokens}{}", &xml[..a], &xml[b..]),
        _ => xml.to_string(),
    };
    let (a, b) = (xml.find("<name>").unwrap(), xml.find("</name>").unwrap());
    format!("{}<name>{}{}", &xml[..a], xml_escape(&state), &xml[b..])
}

/// One reservation holding one instance, as DescribeInstances gives it: id, state, tags, metadata options.
pub(super) fn describe_xml(id: &str, i: &Instance, with_options: bool) -> String {
    let code = match i.run_state {
        "running" => 16,
        "terminated" => 48,
        _ => 80,
    };
    let tags: String = i
        .tags
        .iter()
        .map(|(k, v)| format!("<item><key>{}</key><value>{}</value></item>", xml_escape(k), xml_escape(v)))
        .collect();
    let tags = if tags.is_empty() { String::new() } else { format!("<tagSet>{tags}</tagSet>") };
    let options = if with_options { options_xml("metadataOptions", i) } else { String::new() };
    format!(
        "<item><reservationId>r-{}</reservationId><ownerId>{ACCOUNT}</ownerId><groupSet/><instancesSet><item><instanceId>{id}</instanceId><instanceState><code>{code}</code><name>{}</name></instanceState>{tags}{options}</item></instancesSet></item>",
        &id[2..],
        i.run_state
    )
}

pub(super) fn options_xml(tag: &str, i: &Instance) -> String {
    let o = &i.options;
    let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
    format!(
        "<{tag}><state>{}</state>{}{}{}{}{}</{tag}>",
        i.state(),
        field("httpTokens", o.http_tokens.map(str::to_string)),
        field("httpPutResponseHopLimit", o.hop_limit.map(|h| h.to_string())),
        field("httpEndpoint", o.http_endpoint.map(str::to_string)),
        field("httpProtocolIpv6", o.ipv6.map(str::to_string)),
        field("instanceMetadataTags", o.tags.map(str::to_string)),
    )
}
