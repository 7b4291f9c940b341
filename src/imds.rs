//! The metadata side: instance identity over IMDSv2, through one `aws_config::imds::Client` that also
//! backs the instance-role credentials, so a run asks for one session token.

use crate::error::{Error, Result, chain};
use crate::ids::{InstanceId, Region};
use crate::remote;
use aws_config::imds::client::error::{ImdsError, TokenError};
use aws_config::provider_config::ProviderConfig;
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ConnectorError, SdkError};
use std::error::Error as _;
use std::time::{Duration, SystemTime};
use tokio::net::TcpStream;

/// Long enough for any run; short so that a token that leaks anyway is soon worthless.
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// IMDS accepts connections at once on the instance: a second without one means none is coming yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// IMDS answers in milliseconds on the instance. An answer after a second or two is slow, and still an
/// answer; five seconds of silence on an open connection is the hop-limit symptom.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// An answer slower than this is worth a warning: something is in the way.
pub const SLOW: Duration = Duration::from_secs(1);

/// What the rest of the program needs from the metadata service.
pub trait Metadata {
    async fn instance_id(&self) -> Result<InstanceId>;
    async fn region(&self) -> Result<Region>;
    /// Whether an IAM role is attached (`iam/security-credentials/` lists one, rather than 404).
    async fn has_role(&self) -> Result<bool>;
}

/// What doctor needs of the metadata side beyond what apply needs; a fake answers it in the unit tests.
pub trait Probe: Metadata {
    fn endpoint(&self) -> &str;
    /// Whether a TCP connection to the endpoint opens within a second.
    async fn accepts_connections(&self) -> bool;
    async fn availability_zone(&self) -> Result<String>;
    /// When the instance role's current credentials expire, as IMDS gives them (`Expiration`), read
    /// directly: the SDK extends credentials that IMDS serves expired, so its own expiry can't tell.
    /// `None` when no role is attached or the document has no valid `Expiration`.
    async fn role_credentials_expiration(&self) -> Result<Option<SystemTime>>;
    /// Whether the SDK's instance-role provider hands out credentials (they are never shown).
    async fn role_credentials(&self) -> Result<()>;
}

pub struct Imds {
    client: aws_config::imds::Client,
    endpoint: String,
}

impl Imds {
    /// `endpoint` was validated by `config` (http or https, a host, no path). The metadata service is
    /// never reached through a proxy: its HTTP client has none, whatever HTTP_PROXY and HTTPS_PROXY say (a
    /// proxy would answer 403, or with its own instance's metadata).
    pub fn new(endpoint: &str) -> Result<Self> {
        use aws_smithy_http_client::{Builder, tls};
        // IMDS is plain HTTP on every instance: no trust store to load for it. An https endpoint (a test
        // double) gets TLS, still without a proxy.
        let http_client = if endpoint.starts_with("https://") {
            Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc)).build_https()
        } else {
            Builder::new().build_http()
        };
        let client = aws_config::imds::Client::builder()
            .configure(&ProviderConfig::empty().with_http_client(http_client))
            .endpoint(endpoint)
            .map_err(|e| Error::Usage(format!("metadata endpoint {endpoint:?} is not a URL: {e}")))?
            .token_ttl(TOKEN_TTL)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build();
        Ok(Imds { client, endpoint: endpoint.to_string() })
    }

    pub fn client(&self) -> aws_config::imds::Client {
        self.client.clone()
    }

    async fn get(&self, what: &'static str, path: &str) -> Result<Option<String>> {
        match self.client.get(path).await {
            Ok(value) => Ok(Some(value.as_ref().trim().to_string())),
            Err(ImdsError::ErrorResponse(r)) if r.response().status().as_u16() == 404 => Ok(None),
            Err(err) => Err(self.classify(what, err).await),
        }
    }

    async fn classify(&self, what: &'static str, err: ImdsError) -> Error {
        let endpoint = self.endpoint.clone();
        match &err {
            ImdsError::FailedToLoadToken(_) => {
                let token_err = err.source().and_then(|s| s.downcast_ref::<SdkError<TokenError, HttpResponse>>());
                if let Some(status) = token_err.and_then(|e| e.raw_response()).map(|r| r.status().as_u16()) {
                    if status == 429 || status >= 500 {
                        return Error::MetadataBusy { endpoint, status };
                    }
                    return Error::MetadataForbidden { endpoint, detail: token_status_meaning(status).into() };
                }
                let connector = chain(&err).find_map(|e| e.downcast_ref::<ConnectorError>());
                let timed_out = connector.is_some_and(ConnectorError::is_timeout)
                    || matches!(token_err, Some(SdkError::TimeoutError(_)));
                // A timeout is either no connection (not on EC2, network not up) or a connection whose
                // answer never came back: the hop limit. Only a fresh connect tells them apart.
                if timed_out && self.accepts_connections().await {
                    Error::TokenSilent { endpoint }
                } else if timed_out || connector.is_some() {
                    Error::MetadataUnreachable { endpoint, detail: connector_detail(connector) }
                } else {
                    Error::Metadata { what, detail: "the token answer was not an IMDSv2 token".into() }
                }
            }
            ImdsError::ErrorResponse(r) => match r.response().status().as_u16() {
                status @ (429 | 500..=599) => Error::MetadataBusy { endpoint, status },
                status => Error::Metadata { what, detail: format!("HTTP {status}") },
            },
            ImdsError::IoError(_) => Error::MetadataUnreachable { endpoint, detail: "the connection failed".into() },
            ImdsError::Unexpected(_) => Error::Metadata { what, detail: "an unexpected failure".into() },
            _ => Error::Metadata { what, detail: "an answer that could not be read".into() },
        }
    }
}

impl Metadata for Imds {
    async fn instance_id(&self) -> Result<InstanceId> {
        let id = self.get("the instance id", "/latest/meta-data/instance-id").await?.ok_or(Error::Metadata {
            what: "the instance id",
            detail: "IMDS answered 404 for meta-data/instance-id".into(),
        })?;
        id.parse::<InstanceId>()
            .map_err(|_| Error::MetadataInvalid { what: "an instance id", value: remote::sanitize(&id, 80) })
    }

    async fn region(&self) -> Result<Region> {
        let region = self.get("the region", "/latest/meta-data/placement/region").await?.ok_or(Error::Metadata {
            what: "the region",
            detail: "IMDS answered 404 for meta-data/placement/region: give --region".into(),
        })?;
        region
            .parse::<Region>()
            .map_err(|_| Error::MetadataInvalid { what: "a region", value: remote::sanitize(&region, 80) })
    }

    async fn has_role(&self) -> Result<bool> {
        Ok(self
            .get("the instance's IAM role", "/latest/meta-data/iam/security-credentials/")
            .await?
            .is_some_and(|roles| !roles.is_empty()))
    }
}

impl Probe for Imds {
    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    async fn accepts_connections(&self) -> bool {
        let Some(addr) = host_port(&self.endpoint) else { return false };
        matches!(tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await, Ok(Ok(_)))
    }

    async fn availability_zone(&self) -> Result<String> {
        let zone = self
            .get("the availability zone", "/latest/meta-data/placement/availability-zone")
            .await?
            .ok_or(Error::Metadata { what: "the availability zone", detail: "IMDS answered 404".into() })?;
        // A zone is a region and a letter, or a local zone's name: lowercase letters, digits and dashes.
        let ok = !zone.is_empty()
            && zone.len() <= 64
            && zone.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(zone)
        } else {
            Err(Error::MetadataInvalid { what: "an availability zone", value: remote::sanitize(&zone, 80) })
        }
    }

    async fn role_credentials_expiration(&self) -> Result<Option<SystemTime>> {
        const ROLES: &str = "/latest/meta-data/iam/security-credentials/";
        let Some(roles) = self.get("the instance's IAM role", ROLES).await? else { return Ok(None) };
        let Some(role) = roles.lines().next().filter(|r| !r.is_empty() && !r.contains('/')) else { return Ok(None) };
        let Some(document) = self.get("the instance role's credentials", &format!("{ROLES}{role}")).await? else {
            return Ok(None);
        };
        // Only the expiry is read; the document itself is never shown.
        let expiration = serde_json::from_str::<serde_json::Value>(&document)
            .ok()
            .and_then(|v| v.get("Expiration").and_then(|e| e.as_str()).map(str::to_string));
        Ok(expiration.and_then(|e| {
            aws_smithy_types::DateTime::from_str(&e, aws_smithy_types::date_time::Format::DateTime)
                .ok()
                .and_then(|t| SystemTime::try_from(t).ok())
        }))
    }

    async fn role_credentials(&self) -> Result<()> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider =
            aws_config::imds::credentials::ImdsCredentialsProvider::builder().imds_client(self.client()).build();
        provider
            .provide_credentials()
            .await
            .map(drop)
            .map_err(|e| Error::NoCredentials { detail: crate::ec2::credentials_failure(&e) })
    }
}

fn connector_detail(connector: Option<&ConnectorError>) -> String {
    match connector {
        Some(c) if c.is_timeout() => "no connection within 1 s (not on EC2, or the network is not up yet)".into(),
        Some(c) => {
            format!("connection failed ({})", remote::root_cause(c, 120))
        }
        None => "no answer in time".into(),
    }
}

fn token_status_meaning(status: u16) -> &'static str {
    match status {
        403 => {
            "403 Forbidden: the metadata endpoint is disabled for this instance (HttpEndpoint=disabled), or the \
                request went through a proxy (X-Forwarded-For); enable it from outside with \
                `imds-hop-limit --instance-id ID --region R`"
        }
        400 => "400 Bad Request: the token request was malformed",
        401 => "401 Unauthorized",
        _ => "unexpected HTTP status",
    }
}

/// `host:port` of an `http://` endpoint, for a bare TCP connect.
fn host_port(endpoint: &str) -> Option<String> {
    let uri: http::Uri = endpoint.parse().ok()?;
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    Some(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_of_endpoints() {
        assert_eq!(host_port("http://169.254.169.254").as_deref(), Some("169.254.169.254:80"));
        assert_eq!(host_port("http://[fd00:ec2::254]").as_deref(), Some("[fd00:ec2::254]:80"));
        assert_eq!(host_port("http://127.0.0.1:8080/").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(host_port("not a url"), None);
    }
}
