//! The IMDS side: tokens, identity, the instance role's credentials, the instance's tags, and its faults.

use super::*;

/// The IMDS answer, and how long to wait before giving it (`Some(forever)` is a token that never comes).
pub(super) fn imds(
    parts: &hyper::http::request::Parts,
    method: &Method,
    path: &str,
    state: &Arc<Mutex<State>>,
    instance: Option<&str>,
) -> (Reply, Option<Duration>) {
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut s = state.lock().unwrap();
    if header("x-forwarded-for").is_some() || parts.uri.authority().is_some() {
        return (reply(403, TEXT, "Forbidden"), None);
    }
    if s.imds_instance(instance).options.http_endpoint == Some("disabled") {
        return (reply(403, TEXT, "Forbidden"), None);
    }
    if path == "/latest/api/token" {
        if method != Method::PUT {
            return (reply(405, TEXT, "Method Not Allowed"), None);
        }
        let ttl = header("x-aws-ec2-metadata-token-ttl-seconds").and_then(|t| t.parse::<u64>().ok());
        let Some(ttl) = ttl.filter(|t| (1..=21600).contains(t)) else {
            return (reply(400, TEXT, "Bad Request"), None);
        };
        if s.scenario.imds_is(ImdsFault::TokenNeverAnswers) {
            return (reply(200, TEXT, ""), Some(Duration::from_secs(3600)));
        }
        let token = s.secret("TOKEN");
        s.tokens.insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
        let body =
            if s.scenario.imds_is(ImdsFault::TokenWithHeader) { format!("{token}\r\nX-Injected: yes") } else { token };
        let mut r = reply(200, TEXT, body);
        r.headers_mut().insert("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string().parse().unwrap());
        let delay =
            s.scenario.imds(|f| if let ImdsFault::TokenDelay(d) = f { Some(*d) } else { None }).unwrap_or_default();
        return (r, (!delay.is_zero()).then_some(delay));
    }
    if method != Method::GET {
        return (reply(405, TEXT, "Method Not Allowed"), None);
    }
    let given = header("x-aws-ec2-metadata-token");
    let valid = given.as_ref().and_then(|t| s.tokens.get(t).copied()).is_some_and(|expires| Instant::now() < expires);
    // IMDSv1 (no token at all) is answered only where HttpTokens is optional; a bad token never is.
    let v1_allowed = given.is_none() && s.imds_instance(instance).options.http_tokens == Some("optional");
    if !valid && !v1_allowed {
        return (reply(401, TEXT, "Unauthorized"), None);
    }
    s.imds_reads += 1;
    if s.imds_reads
        <= s.scenario.imds(|f| if let ImdsFault::ThrottleFirst(n) = f { Some(*n) } else { None }).unwrap_or(0)
    {
        return (reply(429, TEXT, "Too Many Requests"), None);
    }
    if s.imds_reads
        <= s.scenario.imds(|f| if let ImdsFault::Echo500First(n) = f { Some(*n) } else { None }).unwrap_or(0)
    {
        let page =
            format!("<html><body><h1>500 Internal Server Error</h1><pre>{}</pre></body></html>", echo(parts, b""));
        return (reply(500, "text/html", page), None);
    }
    let id = instance.map_or_else(|| s.scenario.instance_id.clone(), str::to_string);
    let creds_prefix = "/latest/meta-data/iam/security-credentials/";
    let answer = match path {
        "/latest/meta-data/instance-id" | "/latest/meta-data/placement/region"
            if let Some(page) =
                s.scenario.imds(|f| if let ImdsFault::GarbageIdentity(p) = f { Some(*p) } else { None }) =>
        {
            reply(200, "text/html", page)
        }
        "/latest/meta-data/" => reply(200, TEXT, "ami-id\nhostname\niam/\ninstance-id\nplacement/\n"),
        // Instance tags in IMDS: listed only where InstanceMetadataTags is enabled.
        "/latest/meta-data/tags/instance" if s.imds_instance(instance).options.tags == Some("enabled") => {
            reply(200, TEXT, "Name\n")
        }
        "/latest/meta-data/instance-id" => reply(200, TEXT, id.clone()),
        "/latest/meta-data/placement/region" => reply(200, TEXT, REGION),
        "/latest/meta-data/placement/availability-zone" => reply(200, TEXT, format!("{REGION}a")),
        "/latest/dynamic/instance-identity/document" => reply(
            200,
            "application/json",
            format!(
                r#"{{"accountId":"{ACCOUNT}","architecture":"x86_64","availabilityZone":"{REGION}a","imageId":"ami-0123456789abcdef0","instanceId":"{id}","instanceType":"t3.micro","privateIp":"10.0.0.10","region":"{REGION}","version":"2017-09-30"}}"#
            ),
        ),
        p if p == creds_prefix && s.scenario.role_attached => reply(200, TEXT, ROLE),
        p if p.starts_with(creds_prefix) && s.scenario.role_attached && p[creds_prefix.len()..] == *ROLE => {
            if s.scenario.imds_is(ImdsFault::CredentialsEcho500) {
                let page = format!(
                    "<html><body><h1>500 Internal Server Error</h1><pre>{}</pre></body></html>",
                    echo(parts, b"")
                );
                return (reply(500, "text/html", page), None);
            }
            if s.scenario.imds_is(ImdsFault::MalformedCredentials) {
                return (reply(200, TEXT, "{\"Code\": \"Success\", \"AccessKeyId\": "), None);
            }
            let key = format!("ASIA{}", s.secret("KEY"));
            let secret = s.secret("SECRET");
            let session = s.secret("SESSION");
            s.issued.push(Issued { key: key.clone(), secret: secret.clone(), session: session.clone(), account: None });
            let now = SystemTime::now();
            let expires = if s.scenario.imds_is(ImdsFault::ExpiredCredentials) {
                now - Duration::from_secs(600)
            } else {
                now + Duration::from_secs(3600)
            };
            reply(
                200,
                TEXT,
                format!(
                    r#"{{"Code":"Success","LastUpdated":"{}","Type":"AWS-HMAC","AccessKeyId":"{key}","SecretAccessKey":"{secret}","Token":"{session}","Expiration":"{}"}}"#,
                    rfc3339(now - Duration::from_secs(3600)),
                    rfc3339(expires)
                ),
            )
        }
        _ => reply(404, "text/html", "<html><body><h1>404 - Not Found</h1></body></html>"),
    };
    (answer, None)
}
