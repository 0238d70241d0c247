//! A minimal HTTP/1.1 JSON client for plain `http://` URLs: enough for pairing with a peer and
//! for CLI commands to reach a running node on this machine. One request per connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "{0} is not an http:// URL: nodes talk plain HTTP to each other (to encrypt the link, use a VPN or SSH tunnel and give its http:// address)"
    )]
    Url(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("{0} answered something that is not HTTP")]
    Garbled(String),
    #[error("{0} did not answer within {1} s")]
    Timeout(String, u64),
}

/// Splits `http://host:port/base` into ("host:port", "/base").
pub fn split_url(url: &str) -> Result<(String, String), HttpError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpError::Url(url.into()))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(HttpError::Url(url.into()));
    }
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    Ok((host, path.to_string()))
}

/// Sends one request with an optional JSON body; returns the status and body.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), HttpError> {
    const TIMEOUT: u64 = 15;
    tokio::time::timeout(
        Duration::from_secs(TIMEOUT),
        request_inner(method, url, headers, body),
    )
    .await
    .map_err(|_| HttpError::Timeout(url.into(), TIMEOUT))?
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Result<(u16, String), HttpError> {
    let (host, path) = split_url(url)?;
    let path = if path.is_empty() {
        "/".to_string()
    } else {
        path
    };
    let mut s = TcpStream::connect(&host)
        .await
        .map_err(|e| HttpError::Connect(host.clone(), e.to_string()))?;
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
    s.take(4 * 1024 * 1024)
        .read_to_end(&mut raw)
        .await
        .map_err(io)?;
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
        assert!(split_url("https://x").is_err());
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
