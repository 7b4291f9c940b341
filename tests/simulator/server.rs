//! The HTTP servers (IMDS, EC2 over HTTP or HTTPS), the dispatch of each request to its side, and answers
//! cut off mid-body.

use super::*;

/// IMDS refuses connections at early boot: the listener only opens after `refuse_for`.
pub(super) async fn serve_imds(
    listener: std::net::TcpListener,
    addr: SocketAddr,
    refuse_for: Duration,
    state: Arc<Mutex<State>>,
) {
    let listener = if refuse_for.is_zero() {
        listener.set_nonblocking(true).unwrap();
        TcpListener::from_std(listener).unwrap()
    } else {
        drop(listener);
        tokio::time::sleep(refuse_for).await;
        TcpListener::bind(addr).await.expect("rebind IMDS")
    };
    serve(listener, state, "imds", None).await
}

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    server: &'static str,
    instance: Option<Arc<str>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        {
            let mut s = state.lock().unwrap();
            if server == "imds" && s.scenario.ttl_is_hop_limit {
                s.account.settle(Instant::now());
                let hops = s.imds_instance(instance.as_deref()).effective_hop_limit as u32;
                let sock = socket2::SockRef::from(&stream);
                let _ = if stream.local_addr().map(|a| a.is_ipv6()).unwrap_or(false) {
                    sock.set_unicast_hops_v6(hops)
                } else {
                    sock.set_ttl(hops)
                };
            }
        }
        let state = state.clone();
        let instance = instance.clone();
        let by_hand = state.lock().unwrap().scenario.imds(|f| {
            matches!(f, ImdsFault::ChunkedAnswers | ImdsFault::KeepsConnectionsOpen | ImdsFault::HostileChunkSize)
                .then_some(*f)
        });
        if let (Some(fault), "imds") = (by_hand, server) {
            tokio::spawn(serve_by_hand(stream, state, instance, fault));
            continue;
        }
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone(), server, instance.clone()));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// IMDS answered by hand, for the framings hyper would not show: every answer chunked, or framed by its
/// length on a connection kept open whatever the request asked. The answers are `imds`'s own.
async fn serve_by_hand(
    mut stream: tokio::net::TcpStream,
    state: Arc<Mutex<State>>,
    instance: Option<Arc<str>>,
    fault: ImdsFault,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut read = Vec::new();
    loop {
        let end = loop {
            if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut buf = [0u8; 4096];
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buf[..n]),
            }
            if read.len() > 64 * 1024 {
                return;
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut head = httparse::Request::new(&mut headers);
        // A request hyper would refuse (a header that is not one) is refused here too: the connection closes.
        let Ok(httparse::Status::Complete(_)) = head.parse(&read[..end]) else { return };
        let mut request = Request::builder().method(head.method.unwrap_or("GET")).uri(head.path.unwrap_or("/"));
        for h in head.headers.iter() {
            request = request.header(h.name, h.value);
        }
        let Ok(request) = request.body(()) else { return };
        let (parts, ()) = request.into_parts();
        let close = parts.headers.get("connection").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let length: usize =
            parts.headers.get("content-length").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
        let probe_token = parts.method == hyper::Method::PUT
            && parts.headers.get("x-aws-ec2-metadata-token-ttl-seconds").is_some_and(|v| v.as_bytes() == b"60");
        let hostile = fault == ImdsFault::HostileChunkSize && probe_token;
        read.drain(..(end + length).min(read.len()));
        let entry = entry(&parts, "imds", Vec::new());
        let (reply, delay) = imds(&parts, &parts.method, parts.uri.path(), &state, instance.as_deref());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        state.lock().unwrap().record(entry, reply.status().as_u16());
        let (answer, body) = reply.into_parts();
        let Ok(body) = body.collect().await;
        let body = body.to_bytes();
        let mut out = format!("HTTP/1.1 {}\r\n", answer.status);
        for (name, value) in &answer.headers {
            out.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
        }
        let mut out = out.into_bytes();
        if hostile {
            let (first, rest) = body.split_at(body.len().min(5));
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(format!("{:x}\r\n", first.len()).as_bytes());
            out.extend_from_slice(first);
            out.extend_from_slice(b"\r\nFFFFFFFFFFFFFFFF\r\n");
            out.extend_from_slice(rest);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        } else if fault == ImdsFault::ChunkedAnswers {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            let (first, rest) = body.split_at(body.len().min(7));
            for chunk in [first, rest].into_iter().filter(|c| !c.is_empty()) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(&body);
        }
        let closes = matches!(fault, ImdsFault::ChunkedAnswers | ImdsFault::HostileChunkSize);
        if stream.write_all(&out).await.is_err() || close && closes {
            return;
        }
    }
}

pub(super) fn tls_acceptor(cert: &str, key: &str) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(cert).expect("certificate file").collect::<Result<_, _>>().expect("PEM");
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

pub(super) async fn serve_tls(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (state, acceptor) = (state.clone(), acceptor.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            let svc = service_fn(move |req| handle(req, state.clone(), "ec2", None));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

/// The request as an error page that echoes it would show it: request line, every header, the body.
pub(super) fn echo(parts: &hyper::http::request::Parts, body: &[u8]) -> String {
    let mut text = format!("{} {} HTTP/1.1\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        text.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("?")));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(body));
    text
}

/// An answer cut off: its data, then a failure, so the server closes the connection before the length its
/// headers promised (1,000 bytes more).
pub(super) struct Cut(Option<Bytes>);

impl hyper::body::Body for Cut {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(Some(match self.0.take() {
            Some(data) => Ok(hyper::body::Frame::data(data)),
            None => Err(std::io::Error::other("the answer is cut here")),
        }))
    }
}

type Answer = Response<Either<Full<Bytes>, Cut>>;

pub(super) async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    server: &'static str,
    instance: Option<Arc<str>>,
) -> Result<Answer, hyper::Error> {
    let (parts, body) = req.into_parts();
    state.lock().unwrap().arrived += 1;
    let body = body.collect().await?.to_bytes();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let params = if server == "ec2" { parse_form(&String::from_utf8_lossy(&body)) } else { Vec::new() };
    let entry = entry(&parts, server, params.clone());
    if server == "imds" {
        let (reply, delay) = imds(&parts, &method, &path, &state, instance.as_deref());
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        state.lock().unwrap().record(entry, reply.status().as_u16());
        return Ok(reply.map(Either::Left));
    }
    let (delay, hang) = {
        let s = state.lock().unwrap();
        let region = signed_region(&parts);
        let delay = s.scenario.ec2(|f| if let Ec2Fault::Slow(d) = f { Some(*d) } else { None });
        // (EC2's regions hang; STS and Organizations, served beside it, answer.)
        let ec2 = signed_service(&parts).as_deref() == Some("ec2");
        let hangs = s.scenario.ec2(|f| match f {
            Ec2Fault::HangRegions(regions) => Some(ec2 && regions.iter().any(|r| Some(*r) == region.as_deref())),
            _ => None,
        });
        let action_hangs = s.scenario.ec2(|f| match f {
            Ec2Fault::HangActions(actions) => Some(actions.contains(&entry.action.as_str())),
            _ => None,
        });
        (delay.unwrap_or_default(), hangs == Some(true) || action_hangs == Some(true))
    };
    tokio::time::sleep(if hang { Duration::from_secs(3600) } else { delay }).await;
    let (reply, cut) = {
        let mut s = state.lock().unwrap();
        // EC2's clock as its answers carry it (`Date`), read when the request arrives.
        let date = aws_smithy_types::DateTime::from(SystemTime::now() + s.clock_ahead)
            .fmt(aws_smithy_types::date_time::Format::HttpDate)
            .unwrap();
        let mut entry = entry;
        entry.account = s.member_of(&parts);
        let mut reply = ec2(&parts, &body, &params, entry.account.as_deref(), &mut s);
        reply.headers_mut().insert("date", date.parse().unwrap());
        // EC2 names every answer in a header, as the SDK reads it (unless a fault named it already).
        s.counter += 1;
        if !reply.headers().contains_key("x-amzn-requestid") {
            let request_id = format!("5e2a7c3d-0b1f-4e8a-9c6d-{:012x}", s.counter);
            reply.headers_mut().insert("x-amzn-requestid", request_id.parse().unwrap());
        }
        // A cut answer: the headers promise more than the body holds, and the connection closes after it.
        let cut_limit = match entry.action.as_str() {
            "ModifyInstanceMetadataOptions" => {
                s.scenario.ec2(|f| if let Ec2Fault::CutModifyAnswers(n) = f { Some(*n) } else { None })
            }
            "DescribeInstances" => {
                s.scenario.ec2(|f| if let Ec2Fault::CutDescribeAnswers(n) = f { Some(*n) } else { None })
            }
            _ => None,
        }
        .unwrap_or(0);
        let cuts = s.cut.entry(entry.action.clone()).or_default();
        let cut = reply.status() == StatusCode::OK && *cuts < cut_limit;
        *cuts += usize::from(cut);
        s.record(entry, reply.status().as_u16());
        (reply, cut)
    };
    if !cut {
        return Ok(reply.map(Either::Left));
    }
    let (mut parts, body) = reply.into_parts();
    let Ok(collected) = body.collect().await;
    let bytes = collected.to_bytes();
    parts.headers.insert("content-length", (bytes.len() + 1000).to_string().parse().unwrap());
    Ok(Response::from_parts(parts, Either::Right(Cut(Some(bytes)))))
}

/// The log's entry for a request, before its answer.
fn entry(parts: &hyper::http::request::Parts, server: &'static str, params: Vec<(String, String)>) -> Logged {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Logged {
        server,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        // Organizations speaks JSON: its operation is named in a header.
        action: param("Action").unwrap_or_else(|| {
            let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
            target.rsplit('.').next().unwrap_or_default().to_string()
        }),
        dry_run: param("DryRun").as_deref() == Some("true"),
        status: 0,
        via_proxy: parts.uri.authority().is_some(),
        at_ms: 0,
        account: None,
        token_ttl: parts
            .headers
            .get("x-aws-ec2-metadata-token-ttl-seconds")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
        injected: parts.headers.contains_key("x-injected"),
        params,
    }
}

pub(super) const TEXT: &str = "text/plain";

/// The region of a SigV4 signature's credential scope, if the request carries one.
pub(super) fn signed_region(parts: &hyper::http::request::Parts) -> Option<String> {
    let auth = parts.headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(2).map(str::to_string)
}

/// The service of a SigV4 signature's credential scope (ec2, sts, organizations), if the request carries one.
pub(super) fn signed_service(parts: &hyper::http::request::Parts) -> Option<String> {
    let auth = parts.headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    scope.split('/').nth(3).map(str::to_string)
}
