//! Launch templates, as EC2 documents them: DescribeLaunchTemplates and DescribeLaunchTemplateVersions (`$Default`
//! and `$Latest` of every template when none is named, pages of MaxResults), CreateLaunchTemplateVersion (the
//! source version's parameters inherited, each parameter given replacing the inherited one whole, the
//! snapshots of inherited block device mappings dropped unless given, a client token's version made once),
//! and ModifyLaunchTemplate's default version.

use super::*;

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The values of a list parameter: `Key.1`, `Key.2`, ...
fn list<'a>(params: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    (1..).map_while(|n| param(params, &format!("{key}.{n}"))).collect()
}

fn xml_options(o: &Options) -> String {
    let field = |name: &str, v: Option<String>| v.map(|v| format!("<{name}>{v}</{name}>")).unwrap_or_default();
    format!(
        "<metadataOptions>{}{}{}{}{}</metadataOptions>",
        field("httpTokens", o.http_tokens.map(str::to_string)),
        field("httpPutResponseHopLimit", o.hop_limit.map(|h| h.to_string())),
        field("httpEndpoint", o.http_endpoint.map(str::to_string)),
        field("httpProtocolIpv6", o.ipv6.map(str::to_string)),
        field("instanceMetadataTags", o.tags.map(str::to_string)),
    )
}

fn xml_data(d: &TemplateData) -> String {
    let user_data = d.user_data.as_ref().map(|u| format!("<userData>{u}</userData>")).unwrap_or_default();
    let mappings: String = d
        .mappings
        .iter()
        .map(|(device, snapshot)| {
            let snapshot = snapshot.as_ref().map(|s| format!("<snapshotId>{s}</snapshotId>")).unwrap_or_default();
            format!("<item><deviceName>{device}</deviceName><ebs>{snapshot}<volumeSize>8</volumeSize></ebs></item>")
        })
        .collect();
    let mappings = if mappings.is_empty() {
        String::new()
    } else {
        format!("<blockDeviceMappingSet>{mappings}</blockDeviceMappingSet>")
    };
    format!(
        "<launchTemplateData><imageId>{}</imageId><instanceType>t3.micro</instanceType>{user_data}{mappings}{}</launchTemplateData>",
        d.image_id,
        xml_options(&d.options)
    )
}

fn xml_template(id: &str, t: &Template) -> String {
    let tags: String = t
        .tags
        .iter()
        .map(|(k, v)| format!("<item><key>{}</key><value>{}</value></item>", xml_escape(k), xml_escape(v)))
        .collect();
    format!(
        "<item><launchTemplateId>{id}</launchTemplateId><launchTemplateName>{}</launchTemplateName><createTime>2026-01-01T00:00:00.000Z</createTime><createdBy>arn:aws:iam::{ACCOUNT}:root</createdBy><defaultVersionNumber>{}</defaultVersionNumber><latestVersionNumber>{}</latestVersionNumber><tagSet>{tags}</tagSet></item>",
        xml_escape(&t.name),
        t.default,
        t.versions.len()
    )
}

fn xml_version(id: &str, t: &Template, n: i64) -> String {
    format!(
        "<item><launchTemplateId>{id}</launchTemplateId><launchTemplateName>{}</launchTemplateName><versionNumber>{n}</versionNumber><createTime>2026-01-01T00:00:00.000Z</createTime><defaultVersion>{}</defaultVersion>{}</item>",
        xml_escape(&t.name),
        n == t.default,
        xml_data(&t.versions[(n - 1) as usize])
    )
}

fn answered(action: &str, inner: String) -> Reply {
    reply(
        200,
        "text/xml;charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>sim</requestId>{inner}</{action}Response>"
        ),
    )
}

/// One page of `items` from `NextToken` (an index), `MaxResults` at a time.
fn page(items: Vec<String>, params: &[(String, String)]) -> (String, String) {
    let start: usize = param(params, "NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let size: usize = param(params, "MaxResults").and_then(|m| m.parse().ok()).unwrap_or(usize::MAX);
    let end = start.saturating_add(size).min(items.len());
    let next = if end < items.len() { format!("<nextToken>{end}</nextToken>") } else { String::new() };
    (items.get(start..end).unwrap_or_default().concat(), next)
}

/// A version number as a request names it: a number, `$Default` or `$Latest`.
fn version_of(t: &Template, v: &str) -> Option<i64> {
    let n = match v {
        "$Default" => t.default,
        "$Latest" => t.versions.len() as i64,
        n => n.parse().ok()?,
    };
    (1..=t.versions.len() as i64).contains(&n).then_some(n)
}

/// The metadata options a request gives (`LaunchTemplateData.MetadataOptions.*`), if it gives them.
fn options_given(params: &[(String, String)]) -> Option<Options> {
    const P: &str = "LaunchTemplateData.MetadataOptions.";
    if !params.iter().any(|(k, _)| k.starts_with(P)) {
        return None;
    }
    let known = |v: Option<&str>| -> Option<&'static str> {
        match v? {
            "required" => Some("required"),
            "optional" => Some("optional"),
            "enabled" => Some("enabled"),
            "disabled" => Some("disabled"),
            _ => None,
        }
    };
    Some(Options {
        http_tokens: known(param(params, &format!("{P}HttpTokens"))),
        hop_limit: param(params, &format!("{P}HttpPutResponseHopLimit")).and_then(|h| h.parse().ok()),
        http_endpoint: known(param(params, &format!("{P}HttpEndpoint"))),
        ipv6: known(param(params, &format!("{P}HttpProtocolIpv6"))),
        tags: known(param(params, &format!("{P}InstanceMetadataTags"))),
    })
}

/// The block device mappings a request gives, if it gives them.
fn mappings_given(params: &[(String, String)]) -> Option<Vec<(String, Option<String>)>> {
    const P: &str = "LaunchTemplateData.BlockDeviceMapping";
    let devices: Vec<(String, Option<String>)> = (1..)
        .map_while(|n| {
            let device = param(params, &format!("{P}.{n}.DeviceName"))?;
            Some((device.to_string(), param(params, &format!("{P}.{n}.Ebs.SnapshotId")).map(str::to_string)))
        })
        .collect();
    (!devices.is_empty()).then_some(devices)
}

pub(super) fn answer(action: &str, params: &[(String, String)], region: &str, s: &mut State) -> Reply {
    let templates = &mut s.account.templates;
    let not_found = |id: &str| {
        ec2_error(
            400,
            "InvalidLaunchTemplateId.NotFound",
            &format!("The specified launch template, with template ID {id}, does not exist."),
        )
    };
    match action {
        "DescribeLaunchTemplates" => {
            let (ids, names) = (list(params, "LaunchTemplateId"), list(params, "LaunchTemplateName"));
            for id in &ids {
                if templates.get(*id).is_none_or(|t| t.region != region) {
                    return not_found(id);
                }
            }
            for name in &names {
                if !templates.values().any(|t| t.region == region && t.name == *name) {
                    return ec2_error(
                        400,
                        "InvalidLaunchTemplateName.NotFoundException",
                        &format!(
                            "At least one of the launch templates specified in the request does not exist: {name}"
                        ),
                    );
                }
            }
            let items: Vec<String> = templates
                .iter()
                .filter(|(id, t)| {
                    t.region == region
                        && ((ids.is_empty() && names.is_empty())
                            || ids.contains(&id.as_str())
                            || names.contains(&t.name.as_str()))
                })
                .map(|(id, t)| xml_template(id, t))
                .collect();
            let (items, next) = page(items, params);
            answered(action, format!("<launchTemplates>{items}</launchTemplates>{next}"))
        }
        "DescribeLaunchTemplateVersions" => {
            let versions = list(params, "LaunchTemplateVersion");
            let items: Vec<String> = match param(params, "LaunchTemplateId") {
                Some(id) => {
                    let Some(t) = templates.get(id).filter(|t| t.region == region) else { return not_found(id) };
                    let mut items = Vec::new();
                    for v in &versions {
                        let Some(n) = version_of(t, v) else {
                            return ec2_error(
                                400,
                                "InvalidLaunchTemplateVersion.NotFound",
                                "The specified version does not exist.",
                            );
                        };
                        items.push(xml_version(id, t, n));
                    }
                    items
                }
                None => {
                    if versions.is_empty() || versions.iter().any(|v| !v.starts_with('$')) {
                        return ec2_error(
                            400,
                            "InvalidParameterValue",
                            "To describe every template, give $Latest or $Default.",
                        );
                    }
                    let mut items = Vec::new();
                    for (id, t) in templates.iter().filter(|(_, t)| t.region == region) {
                        for v in &versions {
                            items.extend(version_of(t, v).map(|n| xml_version(id, t, n)));
                        }
                    }
                    items
                }
            };
            let (items, next) = page(items, params);
            answered(action, format!("<launchTemplateVersionSet>{items}</launchTemplateVersionSet>{next}"))
        }
        "CreateLaunchTemplateVersion" => {
            let id = param(params, "LaunchTemplateId").unwrap_or_default();
            let Some(t) = templates.get_mut(id).filter(|t| t.region == region) else { return not_found(id) };
            let token = param(params, "ClientToken").map(str::to_string);
            if let Some(n) = token.as_ref().and_then(|token| t.tokens.get(token)) {
                let n = *n;
                return answered(
                    action,
                    format!("<launchTemplateVersion>{}</launchTemplateVersion>", strip_item(&xml_version(id, t, n))),
                );
            }
            let mut data = match param(params, "SourceVersion") {
                Some(v) => {
                    let Some(n) = version_of(t, v) else {
                        return ec2_error(
                            400,
                            "InvalidLaunchTemplateVersion.NotFound",
                            "The source version does not exist.",
                        );
                    };
                    let mut inherited = t.versions[(n - 1) as usize].clone();
                    // EC2: snapshots applied to the block device mapping are ignored unless explicitly included.
                    for (_, snapshot) in &mut inherited.mappings {
                        *snapshot = None;
                    }
                    inherited
                }
                None => TemplateData {
                    image_id: String::new(),
                    user_data: None,
                    mappings: Vec::new(),
                    options: Options::unset(),
                },
            };
            if let Some(options) = options_given(params) {
                data.options = options;
            }
            if let Some(mappings) = mappings_given(params) {
                data.mappings = mappings;
            }
            if let Some(image) = param(params, "LaunchTemplateData.ImageId") {
                data.image_id = image.to_string();
            }
            t.versions.push(data);
            let n = t.versions.len() as i64;
            if let Some(token) = token {
                t.tokens.insert(token, n);
            }
            answered(
                action,
                format!("<launchTemplateVersion>{}</launchTemplateVersion>", strip_item(&xml_version(id, t, n))),
            )
        }
        "ModifyLaunchTemplate" => {
            let id = param(params, "LaunchTemplateId").unwrap_or_default();
            let Some(t) = templates.get_mut(id).filter(|t| t.region == region) else { return not_found(id) };
            let Some(n) = param(params, "SetDefaultVersion").and_then(|v| version_of(t, v)) else {
                return ec2_error(
                    400,
                    "InvalidLaunchTemplateVersion.NotFound",
                    "The specified version does not exist.",
                );
            };
            t.default = n;
            answered(action, format!("<launchTemplate>{}</launchTemplate>", strip_item(&xml_template(id, t))))
        }
        _ => ec2_error(400, "InvalidAction", "The action is not valid for this web service."),
    }
}

/// An `<item>...</item>` as a single structure's contents.
fn strip_item(xml: &str) -> &str {
    xml.strip_prefix("<item>").and_then(|x| x.strip_suffix("</item>")).unwrap_or(xml)
}

/// The Auto Scaling groups of the region, as autoscaling:DescribeAutoScalingGroups answers them (one page).
pub(super) fn groups(region: &str, s: &State) -> Reply {
    let members: String = s
        .scenario
        .groups
        .iter()
        .filter(|_| region == REGION)
        .map(|(name, template, version)| {
            format!(
                "<member><AutoScalingGroupName>{}</AutoScalingGroupName><LaunchTemplate><LaunchTemplateId>{template}</LaunchTemplateId><Version>{}</Version></LaunchTemplate><MinSize>1</MinSize><MaxSize>2</MaxSize><DesiredCapacity>1</DesiredCapacity><DefaultCooldown>300</DefaultCooldown><AvailabilityZones><member>{REGION}a</member></AvailabilityZones><HealthCheckType>EC2</HealthCheckType><CreatedTime>2026-01-01T00:00:00Z</CreatedTime></member>",
                xml_escape(name),
                xml_escape(version)
            )
        })
        .collect();
    reply(
        200,
        "text/xml",
        format!(
            "<DescribeAutoScalingGroupsResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><DescribeAutoScalingGroupsResult><AutoScalingGroups>{members}</AutoScalingGroups></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>"
        ),
    )
}
