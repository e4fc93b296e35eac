//! The controller's metrics as a scraper sees them: a GET of `/metrics` (plain HTTP, or HTTPS
//! with a bearer token, as Prometheus scrapes a secure endpoint) and a sample lookup.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// GET `url` (`http://` or `https://host:port/path`) as the administrator of `KUBECONFIG` (its
/// bearer token, for an `https` URL) and return the body; any status but 200 is an error.
pub async fn http_get(url: &str) -> Result<String> {
    let token = if url.starts_with("https://") {
        kubeconfig_token()?
    } else {
        None
    };
    let (status, body) = get(url, token.as_deref()).await?;
    if status != 200 {
        bail!("GET {url}: status {status}: {}", body.trim());
    }
    Ok(body)
}

/// GET `url` with `token` as the bearer token (none: no `Authorization` header); the status
/// code and body. HTTPS does not verify the server's certificate: the controller's metrics
/// certificate is self-signed unless one is mounted, and Prometheus' scrape configuration
/// (`insecure_skip_verify`) trusts it the same way; the token is what proves the scraper.
pub async fn get(url: &str, token: Option<&str>) -> Result<(u16, String)> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("only http:// and https:// URLs are supported: {url}");
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tcp = tokio::net::TcpStream::connect(hostport)
        .await
        .with_context(|| format!("connecting to {hostport}"))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n{authorization}\r\n");
    let answer = if tls {
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate))
            .with_no_client_auth();
        let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
        let name = ServerName::try_from(host.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {hostport}"))?;
        exchange(stream, &request).await?
    } else {
        exchange(tcp, &request).await?
    };
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {url}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no status in the answer from {url}: {head}"))?;
    Ok((status, body.to_owned()))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, request: &str) -> Result<String> {
    s.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    // A TLS server may close without close_notify after an HTTP/1.0 answer: keep what came.
    if let Err(e) = s.read_to_end(&mut buf).await
        && buf.is_empty()
    {
        return Err(e.into());
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The bearer token of the current user of `KUBECONFIG` (its first file), if it has one.
fn kubeconfig_token() -> Result<Option<String>> {
    let path = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
    let path = path.split(':').next().unwrap_or_default();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let config: serde_json::Value =
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {path}"))?;
    let named = |list: &str, name: &serde_json::Value| {
        config[list]
            .as_array()
            .and_then(|l| l.iter().find(|e| &e["name"] == name).cloned())
            .unwrap_or_default()
    };
    let context = named("contexts", &config["current-context"]);
    let user = named("users", &context["context"]["user"]);
    Ok(user["user"]["token"].as_str().map(str::to_owned))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts any server certificate, still checking the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The value of the sample `name{labels}` in a Prometheus text exposition, where every pair of
/// `labels` must be present (in any order).
pub fn metric_value(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_metric_by_name_and_labels() {
        let text = "# HELP x y\nkubernetes_nmstate_enactments_status{node=\"node1\",status=\"Available\"} 2\n\
                    kubernetes_nmstate_enactments_status{node=\"node2\",status=\"Available\"} 0\n\
                    kubernetes_nmstate_policies_status{status=\"Available\"} 3\n";
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_enactments_status",
                &[("status", "Available"), ("node", "node1")]
            ),
            Some(2.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_policies_status",
                &[("status", "Available")]
            ),
            Some(3.0)
        );
        assert_eq!(
            metric_value(
                text,
                "kubernetes_nmstate_policies_status",
                &[("status", "Ignored")]
            ),
            None
        );
    }
}
