//! SigV4 as EC2 verifies it: scope, timestamp, the HMAC over the canonical request, the session token.

use super::*;

/// Verifies a SigV4 signature as EC2 does (and STS and Organizations, served beside it): the scope (this
/// region's ec2, or sts or organizations), the timestamp (within 5 minutes
/// of the simulator's clock), the HMAC over the canonical request with the key's secret, and for a role's
/// key the session token issued with it. The access key on success; EC2's error answer otherwise.
#[allow(clippy::result_large_err)]
pub(super) fn verify(parts: &hyper::http::request::Parts, body: &[u8], s: &State) -> Result<(String, String), Reply> {
    let auth_failure = || ec2_error(401, "AuthFailure", "AWS was not able to validate the provided access credentials");
    let header = |k: &str| parts.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    let auth = header("authorization");
    let Some(fields) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else { return Err(auth_failure()) };
    let field = |name: &str| fields.split(", ").find_map(|p| p.strip_prefix(name)).unwrap_or("");
    let (credential, signed_headers, signature) = (field("Credential="), field("SignedHeaders="), field("Signature="));
    let scope: Vec<&str> = credential.split('/').collect();
    let [key, date, region, service @ ("ec2" | "sts" | "organizations" | "autoscaling"), "aws4_request"] =
        scope.as_slice()
    else {
        return Err(auth_failure());
    };
    // The account's regions: those enabled for it (DescribeRegions' list). STS and Organizations answer in any.
    if *service == "ec2" && !s.account.regions(&s.scenario).contains(region) {
        return Err(auth_failure());
    }
    let (secret, session) = if let Some((_, secret)) = s.scenario.static_keys.iter().find(|(k, _)| k == key) {
        (secret.clone(), None)
    } else if let Some(issued) = s.issued.iter().find(|i| i.key == *key) {
        (issued.secret.clone(), Some(issued.session.clone()))
    } else {
        return Err(auth_failure());
    };
    if session.as_deref().is_some_and(|t| t != header("x-amz-security-token")) {
        return Err(auth_failure());
    }
    let amz_date = header("x-amz-date");
    let Some(signed_at) = parse_amz_date(amz_date) else { return Err(auth_failure()) };
    let now = SystemTime::now() + s.clock_ahead;
    let skew = now.duration_since(signed_at).unwrap_or_else(|e| e.duration());
    if skew > Duration::from_secs(300) || !amz_date.starts_with(date) {
        return Err(ec2_error(400, "RequestExpired", "Request has expired."));
    }
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = match parts.headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
        Some(hash) => hash.to_string(),
        None => hex(&Sha256::digest(body)),
    };
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload}",
        parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or("")
    );
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region.as_bytes(), service.as_bytes(), b"aws4_request"] {
        k = hmac(&k, part);
    }
    if hex(&hmac(&k, to_sign.as_bytes())) != signature {
        return Err(ec2_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if s.scenario.imds_is(ImdsFault::ExpiredCredentials) && session.is_some() {
        return Err(ec2_error(400, "RequestExpired", "Request has expired."));
    }
    Ok((key.to_string(), region.to_string()))
}

pub(super) fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
