//! A minimal HTTP/1.1 JSON client: enough for pairing with a peer and for CLI commands to reach
//! a running node on this machine. One request per connection. `https://` goes through
//! [`crate::tls`] (with the `tls` feature), pinned to a certificate fingerprint when one is given.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not an http:// or https:// URL")]
    Url(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("{0} answered something that is not HTTP")]
    Garbled(String),
    #[error("{0} did not answer within {1} s")]
    Timeout(String, u64),
}

/// A parsed `http(s)://host[:port][/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// `host:port`, the port filled in from the scheme when missing.
    pub addr: String,
    /// The host alone (what TLS checks a certificate against).
    pub host: String,
    /// The base path, without a trailing slash.
    pub path: String,
}

pub fn parse_url(url: &str) -> Result<Target, HttpError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        return Err(HttpError::Url(url.into()));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if hostport.is_empty() {
        return Err(HttpError::Url(url.into()));
    }
    // `[::1]:7878` keeps its brackets in the address and loses them in the host.
    let (host, addr) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h.to_string(), hostport.to_string())
        }
        _ => (
            hostport.to_string(),
            format!("{hostport}:{}", if tls { 443 } else { 80 }),
        ),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(HttpError::Url(url.into()));
    }
    Ok(Target {
        tls,
        addr,
        host,
        path: path.to_string(),
    })
}

/// Splits `http://host:port/base` into ("host:port", "/base").
pub fn split_url(url: &str) -> Result<(String, String), HttpError> {
    let t = parse_url(url)?;
    Ok((t.addr, t.path))
}

/// Sends one request with an optional JSON body; returns the status and body.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), HttpError> {
    request_pinned(method, url, headers, body, None).await
}

/// [`request`] to an `https://` URL whose certificate must have fingerprint `pin`.
pub async fn request_pinned(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
    pin: Option<&str>,
) -> Result<(u16, String), HttpError> {
    const TIMEOUT: u64 = 15;
    tokio::time::timeout(
        Duration::from_secs(TIMEOUT),
        request_inner(method, url, headers, body, pin),
    )
    .await
    .map_err(|_| HttpError::Timeout(url.into(), TIMEOUT))?
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
    pin: Option<&str>,
) -> Result<(u16, String), HttpError> {
    let t = parse_url(url)?;
    let host = t.addr.clone();
    let path = if t.path.is_empty() {
        "/".to_string()
    } else {
        t.path.clone()
    };
    let mut s = crate::tls::connect(&t.addr, t.tls.then_some((t.host.as_str(), pin)))
        .await
        .map_err(|e| HttpError::Connect(host.clone(), e))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    let io = |e: std::io::Error| HttpError::Connect(host.clone(), e.to_string());
    s.write_all(req.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    match s.take(4 * 1024 * 1024).read_to_end(&mut raw).await {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a whole answer (`Connection:
        // close`) has still answered; a truncated answer fails to parse below.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| HttpError::Garbled(url.into()))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Garbled(url.into()))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_string()
        },
    ))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("http://127.0.0.1:7878").unwrap(),
            ("127.0.0.1:7878".into(), "".into())
        );
        assert_eq!(
            split_url("http://node.lan/parley/").unwrap(),
            ("node.lan:80".into(), "/parley".into())
        );
        assert_eq!(
            parse_url("https://x.example/p").unwrap(),
            Target {
                tls: true,
                addr: "x.example:443".into(),
                host: "x.example".into(),
                path: "/p".into()
            }
        );
        assert_eq!(parse_url("http://[::1]:9/").unwrap().host, "::1");
        assert!(split_url("ftp://x").is_err());
        assert!(split_url("http://").is_err());
    }

    #[test]
    fn chunked_bodies() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
    }
}
