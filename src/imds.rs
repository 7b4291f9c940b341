//! The metadata side: instance identity over IMDSv2, through one `aws_config::imds::Client` that also
//! backs the instance-role credentials, so a run asks for one session token.

use crate::error::{Error, Result, chain};
use aws_config::imds::client::error::{ImdsError, TokenError};
use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ConnectorError, DisplayErrorContext, SdkError};
use std::error::Error as _;
use std::time::Duration;
use tokio::net::TcpStream;

const DEFAULT_ENDPOINT_V4: &str = "http://169.254.169.254";
const DEFAULT_ENDPOINT_V6: &str = "http://[fd00:ec2::254]";
/// Long enough for any run; short so that a token that leaks anyway is soon worthless.
const TOKEN_TTL: Duration = Duration::from_secs(300);
/// IMDS answers in well under a millisecond on the instance; a second of silence means it never will.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// What the rest of the program needs from the metadata service.
pub trait Metadata {
    async fn instance_id(&self) -> Result<String>;
    async fn region(&self) -> Result<String>;
    /// Whether an IAM role is attached (`iam/security-credentials/` lists one, rather than 404).
    async fn has_role(&self) -> Result<bool>;
}

pub struct Imds {
    client: aws_config::imds::Client,
    endpoint: String,
}

/// The endpoint, following the SDK's conventions: `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE` (`IPv4` or `IPv6`), else 169.254.169.254.
pub fn endpoint_from_env() -> Result<String> {
    if let Some(endpoint) = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").ok().filter(|e| !e.is_empty()) {
        return Ok(endpoint);
    }
    match std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE").ok().as_deref() {
        None | Some("") => Ok(DEFAULT_ENDPOINT_V4.into()),
        Some(mode) if mode.eq_ignore_ascii_case("ipv4") => Ok(DEFAULT_ENDPOINT_V4.into()),
        Some(mode) if mode.eq_ignore_ascii_case("ipv6") => Ok(DEFAULT_ENDPOINT_V6.into()),
        Some(mode) => {
            Err(Error::Usage(format!("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE={mode:?}: expected IPv4 or IPv6")))
        }
    }
}

impl Imds {
    pub fn new(endpoint: String) -> Result<Self> {
        let client = aws_config::imds::Client::builder()
            .endpoint(&endpoint)
            .map_err(|e| Error::Usage(format!("metadata endpoint {endpoint:?} is not a URL: {e}")))?
            .token_ttl(TOKEN_TTL)
            .connect_timeout(IO_TIMEOUT)
            .read_timeout(IO_TIMEOUT)
            .build();
        Ok(Imds { client, endpoint })
    }

    pub fn client(&self) -> aws_config::imds::Client {
        self.client.clone()
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn availability_zone(&self) -> Result<String> {
        self.get("the availability zone", "/latest/meta-data/placement/availability-zone")
            .await?
            .ok_or(Error::Metadata { what: "the availability zone", detail: "IMDS answered 404".into() })
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
        let detail = DisplayErrorContext(&err).to_string();
        match &err {
            ImdsError::FailedToLoadToken(_) => {
                let token_err = err.source().and_then(|s| s.downcast_ref::<SdkError<TokenError, HttpResponse>>());
                if let Some(status) = token_err.and_then(|e| e.raw_response()).map(|r| r.status().as_u16()) {
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
                    Error::MetadataUnreachable { endpoint, detail: connector_detail(connector, &detail) }
                } else {
                    Error::Metadata { what, detail }
                }
            }
            ImdsError::ErrorResponse(r) => {
                Error::Metadata { what, detail: format!("HTTP {}", r.response().status().as_u16()) }
            }
            _ => Error::Metadata { what, detail },
        }
    }

    /// Whether a TCP connection to the endpoint opens within a second.
    pub async fn accepts_connections(&self) -> bool {
        let Some(addr) = host_port(&self.endpoint) else { return false };
        matches!(tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr)).await, Ok(Ok(_)))
    }
}

impl Metadata for Imds {
    async fn instance_id(&self) -> Result<String> {
        self.get("the instance id", "/latest/meta-data/instance-id").await?.ok_or(Error::Metadata {
            what: "the instance id",
            detail: "IMDS answered 404 for meta-data/instance-id".into(),
        })
    }

    async fn region(&self) -> Result<String> {
        self.get("the region", "/latest/meta-data/placement/region").await?.ok_or(Error::Metadata {
            what: "the region",
            detail: "IMDS answered 404 for meta-data/placement/region: give --region".into(),
        })
    }

    async fn has_role(&self) -> Result<bool> {
        Ok(self
            .get("the instance's IAM role", "/latest/meta-data/iam/security-credentials/")
            .await?
            .is_some_and(|roles| !roles.is_empty()))
    }
}

fn connector_detail(connector: Option<&ConnectorError>, fallback: &str) -> String {
    match connector {
        Some(c) if c.is_timeout() => "no connection within 1 s (not on EC2, or the network is not up yet)".into(),
        Some(c) => {
            let root = chain(c).last().map(ToString::to_string).unwrap_or_default();
            format!("connection failed ({root})")
        }
        None => fallback.into(),
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
