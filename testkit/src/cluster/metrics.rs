//! The controller's metrics as a scraper sees them: a plain-HTTP GET and a sample lookup.

use anyhow::{Context as _, Result, anyhow, bail};

/// GET a plain-HTTP URL (`http://host:port/path`) and return the body.
pub async fn http_get(url: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported: {url}"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .with_context(|| format!("connecting to {hostport}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed HTTP answer from {url}"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!("GET {url}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
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
