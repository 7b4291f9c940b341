//! SDK failures classified into this program's errors: what kind each is (and so whether and how it is
//! retried), and what of it is safe to show. One classifier for every service (`classify`: EC2, STS,
//! Organizations, and any service a command adds), EC2's own refusals on top of it (`Ec2Api::error`).

use super::Ec2Api;
use super::clock::Clock;
use crate::ec2::failures::{Failure, FailureKind, Service};
use crate::error::{Error, chain};
use crate::remote;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;

impl Ec2Api {
    /// An EC2 call's failure: `classify`'s, with EC2's own refusals (an action not authorized, an instance id
    /// EC2 does not know) in the terms of the instance.
    pub(super) fn error<E>(
        &self,
        operation: &'static str,
        instance_id: &str,
        err: SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match classify(Service::Ec2, operation, &err, self.proxy.as_deref()) {
            Error::Call { failure, .. } if failure.code.as_deref() == Some("UnauthorizedOperation") => {
                Error::NotAuthorized {
                    action: operation,
                    instance_id: instance_id.into(),
                    encoded: err.message().and_then(encoded_authorization_message),
                    refusal: err.message().and_then(crate::ec2::failures::Refusal::parse),
                    hint: self.hint,
                }
            }
            Error::Call { failure, .. }
                if failure.code.as_deref().is_some_and(|c| c.starts_with("InvalidInstanceID")) =>
            {
                Error::InstanceNotFound {
                    instance_id: instance_id.into(),
                    region: self.region.clone(),
                    detail: failure.to_string(),
                }
            }
            other => other,
        }
    }
}

/// Any AWS call's failure as this program's error, whichever service answered: credentials that could not be
/// had or were refused, a refused time (the clock corrected by the answer's `Date`, and the call tried again,
/// or the clock advice), else `Error::Call` with the failure's kind, which says whether and how it is retried.
/// `proxy`: the proxy the calls go through, named when it fails.
pub(super) fn classify<E>(
    service: Service,
    operation: &'static str,
    err: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    proxy: Option<&str>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let Some(cause) = chain(err).find_map(|e| e.downcast_ref::<CredentialsError>()) {
        return Error::NoCredentials { detail: credentials_failure(cause) };
    }
    // The SDK's own bound on finding credentials (its identity cache, 5 s): no provider answered in time.
    if remote::root_cause(err, 80).starts_with("identity resolver timed out") {
        return Error::NoCredentials {
            detail: "no credentials within 5 s: the default chain's providers (the instance role's, through IMDS, \
                     among them) did not answer in time"
                .into(),
        };
    }
    let failure = failure(err, service, proxy);
    let time_refused = match failure.code.as_deref() {
        Some("RequestExpired" | "RequestTimeTooSkewed") => true,
        Some("SignatureDoesNotMatch") => {
            failure.message.as_deref().is_some_and(|m| m.contains("expired") || m.contains("time"))
        }
        _ => false,
    };
    if time_refused && Clock::correct(err.raw_response().and_then(|r| r.headers().get("date"))) {
        return Error::Call { operation, failure: Failure { kind: FailureKind::Skewed, ..failure } };
    }
    match failure.code.as_deref() {
        _ if time_refused => Error::ClockSkew { failure },
        Some(
            "AuthFailure"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "UnrecognizedClientException",
        ) => Error::NoCredentials { detail: format!("{service} refused the credentials: {failure}") },
        _ => Error::Call { operation, failure },
    }
}

/// What is safe to show of an SDK error: the kind, status, EC2's code and message, sanitized, and the
/// request id. `DisplayErrorContext` is not used: it renders the raw response, body and headers included.
fn failure<E>(
    err: &SdkError<E, aws_sdk_ec2::config::http::HttpResponse>,
    service: Service,
    proxy: Option<&str>,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    let mut failure = Failure {
        service,
        kind: FailureKind::Local,
        status,
        code: err.code().map(|c| remote::sanitize(c, 64)),
        message: err.message().map(|m| remote::sanitize(m.split(ENCODED_PREFIX).next().unwrap_or(m), 300)),
        request_id: err.request_id().and_then(remote::request_id),
    };
    failure.kind = match err {
        // The answer could not be read to its end (the connection closed mid-body): whatever its status
        // said, EC2 may have done the call, and another try usually gets a whole answer.
        SdkError::ResponseError(_) => {
            failure.message = Some("the connection closed before the whole answer was read".into());
            FailureKind::Cut
        }
        SdkError::ServiceError(_) => {
            let throttled =
                status == Some(429) || failure.code.as_deref().is_some_and(|c| THROTTLING_CODES.contains(&c));
            match status {
                _ if throttled => FailureKind::Throttled,
                Some(500..=599) => FailureKind::ServerError,
                // A success status whose body could not be read as the answer.
                Some(200..=299) => FailureKind::Malformed,
                _ => FailureKind::Refused,
            }
        }
        SdkError::TimeoutError(_) => FailureKind::Timeout,
        SdkError::DispatchFailure(dispatch) => {
            // The innermost cause says what happened: refused, reset, unknown issuer, ...
            let root = remote::root_cause(err, 200);
            let lower = root.to_ascii_lowercase();
            failure.message = Some(root.clone());
            let incomplete =
                chain(err).find_map(|e| e.downcast_ref::<hyper::Error>()).is_some_and(|h| h.is_incomplete_message());
            if TLS_WORDS.iter().any(|w| lower.contains(w)) {
                FailureKind::Tls
            } else if incomplete {
                // The request went out; the answer (or its end) never came whole.
                failure.message = Some("the connection closed before the whole answer was read".into());
                FailureKind::Cut
            } else if dispatch.is_timeout() {
                FailureKind::Timeout
            } else if let Some(proxy) = proxy {
                failure.message = Some(format!("through the proxy {proxy}: {root}"));
                FailureKind::Proxy
            } else if dispatch.is_io() {
                FailureKind::Connect
            } else {
                FailureKind::Local
            }
        }
        _ => FailureKind::Local,
    };
    if failure.kind == FailureKind::Malformed {
        let bytes = err.raw_response().and_then(|r| r.body().bytes()).map_or(0, <[u8]>::len);
        failure.message = Some(format!("{bytes} bytes that are not an {service} answer"));
    }
    failure
}

/// How rustls names a failed handshake (an untrusted or mismatched certificate, a peer that does not speak
/// TLS, an alert): no retry heals these.
const TLS_WORDS: &[&str] = &["certificate", "tls", "handshake", "corrupt message", "alert", "invalidcontenttype"];

/// The codes for an account over its request budget: EC2's (the EC2 API reference, "Common client errors"),
/// STS's and Organizations' (Throttling, TooManyRequestsException).
const THROTTLING_CODES: &[&str] =
    &["RequestLimitExceeded", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequestsException"];

const ENCODED_PREFIX: &str = "Encoded authorization failure message:";

/// The encoded message of an UnauthorizedOperation, which `aws sts decode-authorization-message` turns into
/// the statement that refused the call. It is shown whole, so it is kept only when it has the shape EC2 gives
/// it: URL-safe base64 without padding, hundreds of characters long (it carries the whole request context,
/// encrypted). Everything secret that a request carries has another shape: an access key id is 20
/// characters, a secret key 40 and an IMDS token 56, and those and session tokens are standard base64 with
/// `+`, `/` or `=`, except access key ids, which are refused wherever they stand in it (`AKIA`, `ASIA`, ...
/// and 16 capitals or digits; in a real message, by chance, as likely as 20 given characters). Anything else
/// there is shown as absent.
fn encoded_authorization_message(message: &str) -> Option<String> {
    let encoded = message.split_once(ENCODED_PREFIX)?.1.trim();
    let ok = (ENCODED_MIN..=8192).contains(&encoded.len())
        && encoded.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && !holds_access_key_id(encoded);
    ok.then(|| encoded.to_string())
}

/// Whether `text` holds something shaped like an AWS access key id: a known four-letter prefix, then 16
/// capitals or digits.
fn holds_access_key_id(text: &str) -> bool {
    const PREFIXES: [&str; 11] =
        ["AKIA", "ASIA", "AROA", "AIDA", "AGPA", "AIPA", "ANPA", "ANVA", "APKA", "ABIA", "ACCA"];
    let b = text.as_bytes();
    (0..b.len().saturating_sub(19)).any(|i| {
        PREFIXES.iter().any(|p| b[i..].starts_with(p.as_bytes()))
            && b[i + 4..i + 20].iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

const ENCODED_MIN: usize = 128;

/// Why no credentials could be had, in this program's words: which kind of failure, and for the instance
/// role the status IMDS answered, never the provider's own rendering of it (that prints IMDS's whole error
/// response, whose page can echo the request's token header). What remains of the provider's words goes
/// through `remote`, cut before any dump of a response.
pub fn credentials_failure(cause: &CredentialsError) -> String {
    use aws_config::imds::client::error::ImdsError;
    let imds = chain(cause).find_map(|e| e.downcast_ref::<ImdsError>());
    let mut detail = match (imds, cause) {
        (Some(ImdsError::ErrorResponse(r)), _) => format!(
            "the instance metadata service answered HTTP {} to the request for the instance role's credentials",
            r.response().status().as_u16()
        ),
        (Some(ImdsError::FailedToLoadToken(_)), _) => {
            "no IMDSv2 token for the request for the instance role's credentials".into()
        }
        (Some(ImdsError::IoError(_)), _) => {
            "the instance metadata service could not be reached for the instance role's credentials".into()
        }
        (Some(_), _) => "the instance role's credentials could not be read from the instance metadata service".into(),
        (None, CredentialsError::CredentialsNotLoaded(_)) => format!(
            "none of the environment, a profile, web identity, the container or the instance role gave any ({})",
            remote::root_cause(cause, 200)
        ),
        (None, CredentialsError::ProviderTimedOut(_)) => "the credentials provider did not answer in time".into(),
        (None, CredentialsError::InvalidConfiguration(_)) => {
            format!("the credentials configuration is invalid: {}", remote::root_cause(cause, 200))
        }
        (None, _) => format!("the credentials provider failed: {}", remote::root_cause(cause, 200)),
    };
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        detail.push_str(
            "; AWS_EC2_METADATA_DISABLED=true is set, which keeps the SDK from reading the instance role's \
             credentials from IMDS: unset it",
        );
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::config::http::HttpResponse;
    use aws_sdk_ec2::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
    use aws_smithy_types::body::SdkBody;

    type Sdk = SdkError<DescribeInstancesError, HttpResponse>;

    /// EC2 answered `status` with `code` (none: an answer that is not EC2's), and optionally a header.
    fn answered(status: u16, code: Option<&str>, header: Option<(&str, &str)>) -> Sdk {
        let mut meta = ErrorMetadata::builder().message("what EC2 said");
        if let Some(code) = code {
            meta = meta.code(code);
        }
        let mut raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::from("<html>a page</html>"));
        if let Some((name, value)) = header {
            raw.headers_mut().insert(name.to_string(), value.to_string());
        }
        SdkError::service_error(DescribeInstancesError::generic(meta.build()), raw)
    }

    fn dispatch(err: ConnectorError) -> Sdk {
        SdkError::dispatch_failure(err)
    }

    fn io(kind: std::io::ErrorKind, text: &str) -> ConnectorError {
        ConnectorError::io(Box::new(std::io::Error::new(kind, text.to_string())))
    }

    /// Every kind the classifier assigns, from the SDK failure that gets it. (An answer cut off mid-body that
    /// hyper reports as an incomplete message is `Cut` too; hyper's error cannot be made outside hyper, so the
    /// black-box tests' cut answers cover it.)
    #[test]
    fn each_sdk_failure_is_classified_by_what_happened() {
        use FailureKind::*;
        let throttled_by_status = answered(429, Some("SomethingNew"), None);
        let throttled_by_code = answered(503, Some("RequestLimitExceeded"), None);
        let cases: Vec<(Sdk, Option<&str>, FailureKind)> = vec![
            (throttled_by_status, None, Throttled),
            (throttled_by_code, None, Throttled),
            (answered(500, Some("InternalError"), None), None, ServerError),
            (answered(200, None, None), None, Malformed),
            (answered(400, Some("InvalidParameterValue"), None), None, Refused),
            (SdkError::timeout_error("the attempt took too long"), None, Timeout),
            (dispatch(ConnectorError::timeout("connect timed out".into())), None, Timeout),
            (dispatch(io(std::io::ErrorKind::ConnectionRefused, "connection refused")), None, Connect),
            (dispatch(io(std::io::ErrorKind::Other, "invalid peer certificate: UnknownIssuer")), None, Tls),
            (dispatch(io(std::io::ErrorKind::ConnectionRefused, "refused")), Some("http://proxy:3128"), Proxy),
            (dispatch(ConnectorError::other("no connector".into(), None)), None, Local),
            (
                SdkError::response_error(
                    "the body ended early",
                    HttpResponse::new(200.try_into().unwrap(), SdkBody::empty()),
                ),
                None,
                Cut,
            ),
            (SdkError::construction_failure("a request that cannot be built"), None, Local),
        ];
        for (err, proxy, kind) in cases {
            let f = failure(&err, Service::Ec2, proxy);
            assert_eq!(f.kind, kind, "{f}");
        }
        let malformed = failure(&answered(200, None, None), Service::Ec2, None);
        assert_eq!(malformed.message.as_deref(), Some("19 bytes that are not an EC2 answer"), "never the body itself");
        let proxied = failure(
            &dispatch(io(std::io::ErrorKind::ConnectionRefused, "refused")),
            Service::Ec2,
            Some("http://proxy:3128"),
        );
        assert!(proxied.message.unwrap().starts_with("through the proxy http://proxy:3128"));
    }

    fn api() -> Ec2Api {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .build();
        let autoscaling = aws_sdk_autoscaling::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .build();
        Ec2Api {
            client: aws_sdk_ec2::Client::from_conf(config),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling),
            region: "us-west-2".into(),
            proxy: None,
            hint: crate::ec2::failures::POLICY_HINT,
        }
    }

    /// What each refusal becomes for the rest of the program, and so its exit code.
    #[test]
    fn each_refusal_becomes_its_own_error() {
        let error = |err: Sdk| api().error("DescribeInstances", "i-12345678", err);
        let unauthorized = error(answered(403, Some("UnauthorizedOperation"), None));
        assert!(matches!(unauthorized, Error::NotAuthorized { action: "DescribeInstances", .. }), "{unauthorized}");
        for code in ["AuthFailure", "InvalidClientTokenId", "ExpiredToken", "UnrecognizedClientException"] {
            let err = error(answered(401, Some(code), None));
            assert!(matches!(err, Error::NoCredentials { .. }), "{code}: {err}");
        }
        // A refused time with no Date to correct the clock by: the clock advice.
        let skew = error(answered(400, Some("RequestExpired"), None));
        assert!(matches!(skew, Error::ClockSkew { .. }), "{skew}");
        let gone = error(answered(400, Some("InvalidInstanceID.NotFound"), None));
        assert!(matches!(gone, Error::InstanceNotFound { .. }), "{gone}");
        let other = error(answered(400, Some("InvalidParameterValue"), None));
        assert!(matches!(other, Error::Call { failure: Failure { kind: FailureKind::Refused, .. }, .. }), "{other}");
        // A refused time whose answer's Date shows this clock an hour off: corrected, and tried again.
        let date =
            aws_smithy_types::DateTime::from(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
                .fmt(aws_smithy_types::date_time::Format::HttpDate)
                .unwrap();
        let skewed = error(answered(400, Some("RequestExpired"), Some(("date", &date))));
        assert!(matches!(skewed, Error::Call { failure: Failure { kind: FailureKind::Skewed, .. }, .. }), "{skewed}");
    }

    /// STS's and Organizations' failures go through the same classifier as EC2's: the clock corrected by a
    /// refused time's `Date`, a proxy named, credentials refused said as such, throttling by their own codes,
    /// every failure in the service's own name.
    #[test]
    fn every_service_is_classified_alike_in_its_own_name() {
        let sts = |err: &Sdk| classify(Service::Sts, "AssumeRole", err, Some("http://proxy:3128"));
        let date =
            aws_smithy_types::DateTime::from(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
                .fmt(aws_smithy_types::date_time::Format::HttpDate)
                .unwrap();
        let skewed = sts(&answered(400, Some("RequestExpired"), Some(("date", &date))));
        assert!(
            matches!(
                &skewed,
                Error::Call { failure: Failure { kind: FailureKind::Skewed, service: Service::Sts, .. }, .. }
            ),
            "{skewed}"
        );
        let throttled = sts(&answered(400, Some("Throttling"), None));
        assert!(
            throttled.to_string().starts_with("sts:AssumeRole failed: throttled, HTTP 400, Throttling"),
            "{throttled}"
        );
        assert_eq!(throttled.exit_code(), crate::exit::ExitCode::Throttled);
        let disabled = sts(&answered(403, Some("RegionDisabledException"), None));
        assert_eq!(disabled.exit_code(), crate::exit::ExitCode::NotAuthorized, "{disabled}");
        let proxied = sts(&dispatch(io(std::io::ErrorKind::ConnectionRefused, "refused")));
        assert!(proxied.to_string().contains("through the proxy http://proxy:3128"), "{proxied}");
        let refused = sts(&answered(403, Some("InvalidClientTokenId"), None));
        assert!(
            matches!(&refused, Error::NoCredentials { detail } if detail.starts_with("STS refused the credentials")),
            "{refused}"
        );
        let listing = classify(Service::Organizations, "ListAccounts", &answered(200, None, None), None);
        assert_eq!(
            listing.to_string(),
            "organizations:ListAccounts failed: an answer that is not an AWS Organizations answer, HTTP 200: 19 bytes \
             that are not an AWS Organizations answer"
        );
    }

    #[test]
    fn an_encoded_message_is_kept_only_in_the_shape_ec2_gives_it() {
        let real = format!("{ENCODED_PREFIX} {}", "4GIOHlTkIaWHQD0Q0m6XSnuUMCm-abPZDWKfnyvW-cmeh5SqT7J2Hx_G".repeat(4));
        assert!(encoded_authorization_message(&real).is_some());
        for echo in [
            "AKIAIOSFODNN7EXAMPLE".to_string(),
            "AKIAIOSFODNN7EXAMPLE".repeat(10),
            format!("x{}", "ASIAIOSFODNN7EXAMPLE".repeat(8)),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".repeat(4),
            "AQAEAFTNrA4eEGx0AQgJ1arIq_Cg==".repeat(6),
        ] {
            assert_eq!(encoded_authorization_message(&format!("{ENCODED_PREFIX} {echo}")), None, "{echo}");
        }
    }
}
