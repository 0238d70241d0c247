//! Outbound HTTP: to peers (pairing, the hello before each sync connection) and from the CLI
//! to its own node, through reqwest. Every request is time-limited, replies are size-limited
//! (an error, never a silent cut), redirects and proxies are not followed, and a peer's address
//! must pass the outbound-address rules ([`check_ip`]) both as written and as resolved, at
//! each connect — so a name that resolves to loopback is refused like the literal address.
//! `https://` goes through [`crate::tls`] (feature `tls`), pinned to a certificate fingerprint
//! when one is given.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Whole-request time limit.
pub const TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest reply read; peers' answers are a few hundred bytes.
pub const MAX_REPLY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not a usable http:// or https:// URL: {1}")]
    Url(String, &'static str),
    #[error("{0}")]
    Address(String),
    #[error("cannot reach {0}: {1}")]
    Connect(String, String),
    #[error("{0} answered something that is not HTTP with a UTF-8 body")]
    Garbled(String),
    #[error("{0} did not answer within {1} s")]
    Timeout(String, u64),
    #[error("{0} answered more than {1} bytes; refusing the rest")]
    TooLarge(String, usize),
    #[error("{0}")]
    Tls(String),
}

/// A parsed `http(s)://host[:port][/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    /// `host:port`, the port filled in from the scheme when missing.
    pub addr: String,
    /// The host alone (what TLS checks a certificate against).
    pub host: String,
    pub port: u16,
    /// The base path, without a trailing slash.
    pub path: String,
}

/// Parses a base URL, refusing anything a request line or header could be bent with: control
/// characters and spaces (CR/LF injection), user info, queries and fragments.
pub fn parse_url(url: &str) -> Result<Target, HttpError> {
    let bad = |why| HttpError::Url(url.escape_debug().to_string(), why);
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad("it contains spaces or control characters"));
    }
    let u = reqwest::Url::parse(url).map_err(|_| bad("it does not parse"))?;
    let tls = match u.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(bad("use http:// or https://")),
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("it must not carry a user name or password"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => return Err(bad("it names no host")),
    };
    let port = u
        .port_or_known_default()
        .ok_or_else(|| bad("it names no port"))?;
    let addr = match u.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    Ok(Target {
        tls,
        addr,
        host,
        port,
        path: u.path().trim_end_matches('/').to_string(),
    })
}

/// Splits `http://host:port/base` into ("host:port", "/base").
pub fn split_url(url: &str) -> Result<(String, String), HttpError> {
    let t = parse_url(url)?;
    Ok((t.addr, t.path))
}

/// The outbound-address rules for a peer: never unspecified, link-local (which includes the
/// cloud metadata address 169.254.169.254), multicast or broadcast addresses, nor the metadata
/// address fd00:ec2::254; loopback only when `allow_loopback` (`allow_loopback_peers`).
/// Private LAN addresses are fine: sites of one org often sit on one.
pub fn check_ip(ip: IpAddr, allow_loopback: bool) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let metadata_v6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    let why = match ip {
        IpAddr::V4(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V4(a) if a.is_link_local() => Some("link-local (cloud metadata lives there)"),
        IpAddr::V4(a) if a.is_multicast() || a == Ipv4Addr::BROADCAST => Some("multicast"),
        IpAddr::V4(a) if a.is_loopback() && !allow_loopback => Some("loopback"),
        IpAddr::V6(a) if a.is_unspecified() => Some("unspecified"),
        IpAddr::V6(a) if a == metadata_v6 => Some("the cloud metadata address"),
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Some("link-local"),
        IpAddr::V6(a) if a.is_multicast() => Some("multicast"),
        IpAddr::V6(a) if a.is_loopback() && !allow_loopback => Some("loopback"),
        _ => None,
    };
    match why {
        None => Ok(()),
        Some("loopback") => Err(format!(
            "{ip} is a loopback address, which peers may not use; set allow_loopback_peers (PARLEY_ALLOW_LOOPBACK_PEERS=1) only when every node runs on this machine"
        )),
        Some(w) => Err(format!("{ip} is {w}; a peer's address must not be")),
    }
}

/// Checks a peer's URL as written: its form, and its host if that is an address (or
/// `localhost`). Names are checked again as resolved, at every connect.
pub fn check_peer_url(url: &str, allow_loopback: bool) -> Result<Target, HttpError> {
    let t = parse_url(url)?;
    if let Ok(ip) = t.host.parse::<IpAddr>() {
        check_ip(ip, allow_loopback).map_err(HttpError::Address)?;
    } else if (t.host == "localhost" || t.host.ends_with(".localhost")) && !allow_loopback {
        check_ip(Ipv4Addr::LOCALHOST.into(), false).map_err(HttpError::Address)?;
    }
    Ok(t)
}

/// Resolves `host:port` and keeps the addresses the rules allow; refuses when none is left.
/// What [`resolve`] says when a name resolves only to addresses the rules refuse: a fact about
/// the address, not a passing failure, so dialing it again cannot help.
pub const NO_USABLE_ADDRESS: &str = "resolves to no usable address";

pub async fn resolve(
    host: &str,
    port: u16,
    allow_loopback: bool,
) -> Result<Vec<SocketAddr>, String> {
    let all: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut why = None;
    let ok: Vec<SocketAddr> = all
        .into_iter()
        .filter(|a| match check_ip(a.ip(), allow_loopback) {
            Ok(()) => true,
            Err(e) => {
                why.get_or_insert(e);
                false
            }
        })
        .collect();
    if ok.is_empty() {
        return Err(match why {
            Some(e) => format!("{host} {NO_USABLE_ADDRESS}: {e}"),
            None => format!("{host} resolves to no address"),
        });
    }
    Ok(ok)
}

/// reqwest's resolver, with the outbound-address rules applied to what a name resolves to.
struct Guarded {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_loopback;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolve(&host, 0, allow)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Who a request goes to, and under which rules.
#[derive(Debug, Clone, Copy)]
pub enum Dest<'a> {
    /// A peer: the outbound-address rules apply; `https://` is pinned to `pin` when given.
    Peer {
        pin: Option<&'a str>,
        allow_loopback: bool,
    },
    /// This machine's own node (the CLI): loopback is the point. The request carries the
    /// node's admin token, so plain `http://` is allowed to a loopback address only; anything
    /// else must be `https://`, or the token would cross the network in clear.
    Local,
}

/// Sends one request with an optional JSON body and bearer token; returns status and body.
pub async fn request(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&serde_json::Value>,
    dest: Dest<'_>,
) -> Result<(u16, String), HttpError> {
    let (allow_loopback, pin) = match dest {
        Dest::Peer {
            pin,
            allow_loopback,
        } => (allow_loopback, pin),
        Dest::Local => (true, None),
    };
    let t = check_peer_url(url, allow_loopback)?;
    if matches!(dest, Dest::Local) {
        local_only(url, &t)?;
    }
    let b = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .dns_resolver(Arc::new(Guarded { allow_loopback }));
    let client = build(b, &t, pin)?;
    let m = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| HttpError::Url(url.into(), "bad method"))?;
    let mut req = client
        .request(m, url)
        .header(reqwest::header::ACCEPT, "application/json");
    if let Some(tok) = bearer {
        req = req.bearer_auth(tok);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let secs = TIMEOUT.as_secs();
    let err = |e: reqwest::Error| {
        if e.is_timeout() {
            HttpError::Timeout(url.into(), secs)
        } else {
            HttpError::Connect(t.addr.clone(), error_chain(&e))
        }
    };
    let mut resp = req.send().await.map_err(err)?;
    let status = resp.status().as_u16();
    if resp.content_length().is_some_and(|n| n > MAX_REPLY as u64) {
        return Err(HttpError::TooLarge(url.into(), MAX_REPLY));
    }
    let mut raw = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(err)? {
        if raw.len() + chunk.len() > MAX_REPLY {
            return Err(HttpError::TooLarge(url.into(), MAX_REPLY));
        }
        raw.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(raw).map_err(|_| HttpError::Garbled(url.into()))?;
    Ok((status, text))
}

/// A request carrying this machine's node token goes over plain http only to loopback.
fn local_only(url: &str, t: &Target) -> Result<(), HttpError> {
    if !t.tls && !is_loopback_host(&t.host) {
        return Err(HttpError::Address(format!(
            "{url} is plain http to another machine, which would send the node's token in \
             clear: use https://, or run the command on the node's machine"
        )));
    }
    Ok(())
}

/// The client every outbound request uses: no redirects, no proxy, a bounded connect, and
/// for `https://` the node's TLS (pinned to `pin` when given).
fn build(
    b: reqwest::ClientBuilder,
    t: &Target,
    pin: Option<&str>,
) -> Result<reqwest::Client, HttpError> {
    crate::tls::ensure_provider();
    let mut b = b
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT);
    if t.tls {
        b = crate::tls::reqwest_tls(b, pin).map_err(HttpError::Tls)?;
    }
    b.build()
        .map_err(|e| HttpError::Connect(t.addr.clone(), e.to_string()))
}

/// `localhost` (and its subdomains) or a loopback IP, with or without brackets.
fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.ends_with(".localhost")
        || h.parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// reqwest's errors keep the useful part (refused, resolved to loopback…) in their sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// `method url` to this machine's own node with `bearer`, writing a 2xx answer's body into
/// `out` as it arrives (a backup can be larger than memory). Returns the status and, for an
/// answer that is not 2xx, its body (at most [`MAX_REPLY`]). No overall time limit: the node
/// answers only after it has written the whole backup, which takes as long as it takes; a
/// connection silent for `idle` ends it.
pub async fn download_local(
    method: &str,
    url: &str,
    bearer: &str,
    out: &mut (impl std::io::Write + Send),
    idle: Duration,
) -> Result<(u16, String), HttpError> {
    let t = check_peer_url(url, true)?;
    local_only(url, &t)?;
    let client = build(reqwest::Client::builder().read_timeout(idle), &t, None)?;
    let m = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| HttpError::Url(url.into(), "bad method"))?;
    let err = |e: reqwest::Error| {
        if e.is_timeout() {
            HttpError::Timeout(url.into(), idle.as_secs())
        } else {
            HttpError::Connect(t.addr.clone(), error_chain(&e))
        }
    };
    let mut resp = client
        .request(m, url)
        .bearer_auth(bearer)
        .send()
        .await
        .map_err(err)?;
    let status = resp.status().as_u16();
    if !(200..300).contains(&status) {
        let mut raw = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(err)? {
            if raw.len() + chunk.len() > MAX_REPLY {
                break;
            }
            raw.extend_from_slice(&chunk);
        }
        return Ok((status, String::from_utf8_lossy(&raw).into_owned()));
    }
    while let Some(chunk) = resp.chunk().await.map_err(err)? {
        out.write_all(&chunk)
            .map_err(|e| HttpError::Address(format!("writing what {url} sent: {e}")))?;
    }
    Ok((status, String::new()))
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
        let t = parse_url("https://x.example/p").unwrap();
        assert_eq!(
            (t.tls, t.addr.as_str(), t.host.as_str(), t.path.as_str()),
            (true, "x.example:443", "x.example", "/p")
        );
        assert_eq!(parse_url("http://[::1]:9/").unwrap().host, "::1");
        assert_eq!(parse_url("http://[::1]:9/").unwrap().addr, "[::1]:9");
        for bad in [
            "ftp://x",
            "http://",
            "http://a:1/\r\nX-Evil: 1",
            "http://a:1/ HTTP/1.1",
            "http://a\n:1",
            "http://u:p@a:1",
            "http://a:1/?q=1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn outbound_address_rules() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for refused in [
            "0.0.0.0",
            "169.254.169.254",
            "169.254.1.2",
            "fd00:ec2::254",
            "fe80::1",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(check_ip(ip(refused), true).is_err(), "{refused}");
        }
        for lo in ["127.0.0.1", "127.8.9.1", "::1", "::ffff:127.0.0.1"] {
            let e = check_ip(ip(lo), false).unwrap_err();
            assert!(e.contains("allow_loopback_peers"), "{e}");
            assert!(check_ip(ip(lo), true).is_ok(), "{lo}");
        }
        for fine in [
            "10.1.2.3",
            "192.168.1.20",
            "172.16.0.5",
            "203.0.113.7",
            "fd12::5",
        ] {
            assert!(check_ip(ip(fine), false).is_ok(), "{fine}");
        }
        assert!(check_peer_url("http://localhost:7878", false).is_err());
        assert!(check_peer_url("http://127.0.0.1:7878", false).is_err());
        assert!(check_peer_url("http://127.0.0.1:7878", true).is_ok());
        assert!(check_peer_url("http://parley.lan:7878", false).is_ok());
    }

    /// Serves one canned reply on a local port and returns the URL.
    async fn serve_once(reply: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&reply).await;
        });
        url
    }

    #[tokio::test]
    async fn a_chunk_boundary_inside_a_character_is_fine() {
        // "é" is two bytes; the first chunk ends between them.
        let reply = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\n\"\xc3\r\n2\r\n\xa9\"\r\n0\r\n\r\n".to_vec();
        let url = serve_once(reply).await;
        let (status, body) = request("GET", &url, None, None, Dest::Local).await.unwrap();
        assert_eq!((status, body.as_str()), (200, "\"é\""));
    }

    #[tokio::test]
    async fn replies_over_the_limit_fail_instead_of_being_cut() {
        let mut reply = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
        reply.extend(std::iter::repeat_n(b'x', MAX_REPLY + 10));
        let url = serve_once(reply).await;
        let e = request("GET", &url, None, None, Dest::Local)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(..)), "{e}");
        let mut declared = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
            MAX_REPLY + 1
        )
        .into_bytes();
        declared.extend_from_slice(b"xx");
        let url = serve_once(declared).await;
        let e = request("GET", &url, None, None, Dest::Local)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::TooLarge(..)), "{e}");
    }

    #[tokio::test]
    async fn peers_on_loopback_are_refused_before_connecting() {
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let strict = Dest::Peer {
            pin: None,
            allow_loopback: false,
        };
        let e = request("GET", &url, None, None, strict).await.unwrap_err();
        assert!(matches!(e, HttpError::Address(_)), "{e}");
        let by_name = url.replace("127.0.0.1", "localhost");
        assert!(request("GET", &by_name, None, None, strict).await.is_err());
    }

    /// The CLI's token never goes out in clear: plain http to its own node only on loopback.
    #[tokio::test]
    async fn the_cli_sends_its_token_in_clear_only_to_loopback() {
        for url in [
            "http://192.168.1.20:7878/api/v1/peers",
            "http://parley.example.net:7878/api/v1/peers",
            "http://[2001:db8::1]:7878/api/v1/peers",
        ] {
            let e = request("GET", url, Some("secret"), None, Dest::Local)
                .await
                .unwrap_err();
            assert!(matches!(e, HttpError::Address(_)), "{url}: {e}");
            assert!(e.to_string().contains("https"), "{e}");
        }
        let url = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        assert!(
            request("GET", &url, Some("secret"), None, Dest::Local)
                .await
                .is_ok()
        );
        assert!(is_loopback_host("[::1]") && is_loopback_host("localhost"));
        // An IPv4 loopback address written as IPv6 is loopback too; a mapped LAN one is not.
        assert!(is_loopback_host("[::ffff:127.0.0.1]"));
        assert!(!is_loopback_host("[::ffff:192.168.1.20]"));
    }

    #[tokio::test]
    async fn names_are_checked_as_resolved() {
        let e = resolve("localhost", 80, false).await.unwrap_err();
        assert!(e.contains("loopback"), "{e}");
        assert!(!resolve("localhost", 80, true).await.unwrap().is_empty());
        // The resolver the HTTP client uses applies the same rules.
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let strict = Guarded {
            allow_loopback: false,
        };
        assert!(strict.resolve(name("localhost")).await.is_err());
        let open = Guarded {
            allow_loopback: true,
        };
        assert!(open.resolve(name("localhost")).await.is_ok());
    }
}
