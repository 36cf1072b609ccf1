//! The one HTTP client of the tests and the benchmark: a GET on a loopback port over HTTP or
//! HTTPS (any certificate accepted: the operator's default is self-signed), with request
//! headers, giving the status, the headers and the body (gzip decoded on request).

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

/// `GET` (or `request.method`) `http(s)://127.0.0.1:<port><path>`, without a body.
pub async fn get(port: u16, path: &str, request: &Request<'_>) -> std::io::Result<Response> {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut builder = hyper::Request::builder()
        .method(request.method.unwrap_or("GET"))
        .uri(path)
        .header("host", format!("127.0.0.1:{port}"));
    for (name, value) in &request.headers {
        builder = builder.header(*name, value);
    }
    let req = builder.body(Empty::<Bytes>::new()).map_err(io_error)?;
    let response = if request.tls {
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").map_err(io_error)?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, stream).await?;
        send(TokioIo::new(tls), req).await?
    } else {
        send(TokioIo::new(stream), req).await?
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(io_error)?.to_bytes().to_vec();
    Ok(Response { status: parts.status.as_u16(), headers: parts.headers, body, elapsed: started.elapsed() })
}

async fn send<T>(io: T, req: hyper::Request<Empty<Bytes>>) -> std::io::Result<hyper::Response<hyper::body::Incoming>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.map_err(io_error)?;
    tokio::spawn(connection);
    sender.send_request(req).await.map_err(io_error)
}

/// Accepts any server certificate: the tests talk to their own operator on loopback.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = rustls::crypto::ring::default_provider().signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider().signature_verification_algorithms.supported_schemes()
    }
}
