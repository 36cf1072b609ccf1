//! The one HTTP client of the tests and the benchmark: a GET on a loopback port over HTTP or
//! HTTPS (any certificate accepted: the operator's default is self-signed), with request
//! headers, from a chosen loopback address (the operator limits each client address),
//! giving the status, the headers and the body (gzip decoded on request); or many GETs on
//! one connection.
//!
//! The HTTP is hyper's; what is written here is the connection around it, which the tests
//! need to control: the source address, the receive buffer, several requests kept on one
//! connection ([`get_many`]), streams that never read ([`open`]). Not `reqwest`: its pool
//! decides which connection a request takes, and reqwest 0.13 (`rustls-no-provider`,
//! `gzip`) would add 32 crates this workspace does not build (`url`, `idna` and 20 of ICU's,
//! `async-compression`, …): measured by `cargo generate-lockfile` of a crate depending on
//! it, its crates compared with this workspace's `Cargo.lock` (2026-11-23).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// How to send a request.
#[derive(Clone, Debug, Default)]
pub struct Request<'a> {
    /// The method; GET when `None`.
    pub method: Option<&'a str>,
    /// HTTPS instead of HTTP.
    pub tls: bool,
    /// Extra request headers.
    pub headers: Vec<(&'a str, String)>,
    /// The client's address (any of 127.0.0.0/8 on Linux); the kernel's choice when `None`.
    pub source: Option<std::net::IpAddr>,
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    /// The body as received (still gzip-encoded if the server encoded it).
    pub body: Vec<u8>,
    /// Time from connecting to the last byte.
    pub elapsed: Duration,
}

impl Response {
    /// The body as text, gunzipped when `Content-Encoding: gzip`.
    pub fn text(&self) -> std::io::Result<String> {
        let bytes = if self.headers.get("content-encoding").is_some_and(|v| v == "gzip") {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&self.body[..]), &mut out)?;
            out
        } else {
            self.body.clone()
        };
        String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

fn io_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// A rustls client configuration that accepts any server certificate.
pub fn any_certificate() -> std::io::Result<Arc<rustls::ClientConfig>> {
    client_config(Arc::new(AnyCertificate::default()))
}

fn client_config(verifier: Arc<AnyCertificate>) -> std::io::Result<Arc<rustls::ClientConfig>> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(io_error)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate (DER) that the TLS listener on `127.0.0.1:<port>` presents.
pub async fn presented_certificate(port: u16) -> std::io::Result<Vec<u8>> {
    let verifier = Arc::new(AnyCertificate::default());
    let stream = connect(port, None, None).await?;
    let name = ServerName::try_from("localhost").map_err(io_error)?;
    tokio_rustls::TlsConnector::from(client_config(verifier.clone())?).connect(name, stream).await?;
    let presented = verifier.presented.lock().map_err(io_error)?.clone();
    Ok(presented)
}

/// A TCP connection to `127.0.0.1:<port>` from `source` (the kernel's choice when `None`),
/// with a receive buffer of `receive_buffer` bytes when given (a small one keeps a client
/// that does not read from buffering much of a response).
pub async fn connect(
    port: u16,
    source: Option<std::net::IpAddr>,
    receive_buffer: Option<u32>,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(source) = source {
        socket.bind(std::net::SocketAddr::new(source, 0))?;
    }
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// A stream that is plain TCP or TLS on top of it.
pub type Stream =
    tokio_util::either::Either<tokio::net::TcpStream, tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// [`connect`], then a TLS handshake when `tls` (any certificate accepted).
pub async fn open(
    port: u16,
    tls: bool,
    source: Option<std::net::IpAddr>,
    receive_buffer: Option<u32>,
) -> std::io::Result<Stream> {
    let stream = connect(port, source, receive_buffer).await?;
    if !tls {
        return Ok(tokio_util::either::Either::Left(stream));
    }
    let name = ServerName::try_from("localhost").map_err(io_error)?;
    let tls = tokio_rustls::TlsConnector::from(any_certificate()?).connect(name, stream).await?;
    Ok(tokio_util::either::Either::Right(tls))
}

fn request_to(port: u16, path: &str, request: &Request<'_>) -> std::io::Result<hyper::Request<Empty<Bytes>>> {
    let mut builder = hyper::Request::builder()
        .method(request.method.unwrap_or("GET"))
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"));
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    builder.body(Empty::<Bytes>::new()).map_err(io_error)
}

/// How long [`get`] waits for a whole response: a server that accepts and never answers
/// fails the request ([`std::io::ErrorKind::TimedOut`]) instead of holding the test.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// `GET` (or `request.method`) `http(s)://127.0.0.1:<port><path>`, without a body; an error
/// when the whole response has not arrived within [`TIMEOUT`].
pub async fn get(port: u16, path: &str, request: &Request<'_>) -> std::io::Result<Response> {
    get_within(port, path, request, TIMEOUT).await
}

/// [`get`] bounded by `bound`.
pub async fn get_within(port: u16, path: &str, request: &Request<'_>, bound: Duration) -> std::io::Result<Response> {
    let method = request.method.unwrap_or("GET");
    tokio::time::timeout(bound, get_unbounded(port, path, request)).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{method} {path} on 127.0.0.1:{port}: no whole response within {bound:?}"),
        )
    })?
}

async fn get_unbounded(port: u16, path: &str, request: &Request<'_>) -> std::io::Result<Response> {
    let started = Instant::now();
    let stream = open(port, request.tls, request.source, None).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io_error)?;
    tokio::spawn(connection);
    send(&mut sender, request_to(port, path, request)?, started).await
}

/// `GET path` in plain HTTP, its body read a frame at a time and dropped: the length of the
/// body (after any `Content-Encoding`, as sent). For timing a large response, where holding
/// and concatenating the body (as [`get`] does) would cost the client more than the server
/// spends sending it.
pub async fn body_length(port: u16, path: &str) -> std::io::Result<usize> {
    let stream = open(port, false, None, None).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io_error)?;
    tokio::spawn(connection);
    let response = sender.send_request(request_to(port, path, &Request::default())?).await.map_err(io_error)?;
    let mut body = response.into_body();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        length += frame.map_err(io_error)?.data_ref().map_or(0, Bytes::len);
    }
    Ok(length)
}

/// Sends `request` on a connection, reads the whole response; `elapsed` counts from `started`.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    request: hyper::Request<Empty<Bytes>>,
    started: Instant,
) -> std::io::Result<Response> {
    let response = sender.send_request(request).await.map_err(io_error)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io_error)?.to_bytes().to_vec();
    Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body, elapsed: started.elapsed() })
}

/// `count` GETs one after another on one kept-alive connection, each with the headers
/// `request_for(i)` gives; the responses, bodies read; each bounded by [`TIMEOUT`].
pub async fn get_many<'a>(
    port: u16,
    path: &str,
    tls: bool,
    source: Option<std::net::IpAddr>,
    count: usize,
    request_for: impl Fn(usize) -> Request<'a>,
) -> std::io::Result<Vec<Response>> {
    let stream = open(port, tls, source, None).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io_error)?;
    tokio::spawn(connection);
    let mut responses = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let next = async {
            sender.ready().await.map_err(io_error)?;
            send(&mut sender, request_to(port, path, &request_for(i))?, started).await
        };
        let late = |_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("GET {path} #{i}: no response within {TIMEOUT:?}"),
            )
        };
        responses.push(tokio::time::timeout(TIMEOUT, next).await.map_err(late)??);
    }
    Ok(responses)
}

/// Accepts any server certificate (the tests talk to their own operator on loopback) and
/// keeps the last one presented.
#[derive(Debug, Default)]
struct AnyCertificate {
    presented: std::sync::Mutex<Vec<u8>>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut presented) = self.presented.lock() {
            *presented = end_entity.to_vec();
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &ring_algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &ring_algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring_algorithms().supported_schemes()
    }
}

/// The signature algorithms of ring, the provider the operator and kube use.
fn ring_algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}
