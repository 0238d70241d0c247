//! Where webhook deliveries may go. An admin names the URL, but the address it reaches is
//! what matters (SSRF): every address is sorted into a class and checked against the
//! `[webhooks] allow` list — an IP literal as written (reqwest does not resolve those), a
//! name as resolved, at every connection (the client's resolver is `Guarded`), so a name
//! that later resolves elsewhere is refused at send time too.
//!
//! Never allowed: unspecified (0.0.0.0/8, ::), link-local (169.254/16 with the cloud
//! metadata address, fe80::/10), the other metadata addresses (fd00:ec2::254,
//! 100.100.100.200, 168.63.129.16), multicast and broadcast; an IPv4 address inside an IPv6
//! one (IPv4-compatible, NAT64, 6to4) is classed as that IPv4 address. `loopback`, `private` (RFC 1918,
//! 100.64/10, ULA fc00::/7) and `external` (the rest) as configured.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::config::WebhookConfig;

/// Longest URL an endpoint may have.
pub const MAX_URL: usize = 2000;

/// The address classes of the `allow` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub loopback: bool,
    pub private: bool,
    pub external: bool,
}

impl Policy {
    pub fn of(cfg: &WebhookConfig) -> Policy {
        Policy {
            loopback: cfg.allow_loopback,
            private: cfg.allow_private,
            external: cfg.allow_external,
        }
    }

    /// Ok, or why this address may not receive deliveries and what to change.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        let ip = ip.to_canonical();
        let (class, allowed) = match class(ip) {
            Class::Never(why) => {
                return Err(format!(
                    "{ip} is {why}, which webhooks may never be sent to"
                ));
            }
            Class::Loopback => ("loopback", self.loopback),
            Class::Private => ("private", self.private),
            Class::External => ("external", self.external),
        };
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{ip} is a {class} address, which this node does not send webhooks to; add \"{class}\" to `allow` in the [webhooks] table of parley.toml to allow it"
            ))
        }
    }
}

enum Class {
    Never(&'static str),
    Loopback,
    Private,
    External,
}

fn class(ip: IpAddr) -> Class {
    let metadata_v6 = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
    // An IPv4 address carried inside an IPv6 one is what a translator or tunnel reaches:
    // IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002:AABB:CCDD::/48.
    if let IpAddr::V6(a) = ip {
        let s = a.segments();
        let o = a.octets();
        let compatible = s[..6] == [0, 0, 0, 0, 0, 0] && !a.is_loopback() && !a.is_unspecified();
        let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
        let inner = if compatible || nat64 {
            Some(std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        } else if s[0] == 0x2002 {
            Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]))
        } else {
            None
        };
        if let Some(v4) = inner {
            return class(IpAddr::V4(v4));
        }
    }
    match ip {
        // 0.0.0.0/8 is "this network": some systems connect it to the host itself.
        IpAddr::V4(a) if a.octets()[0] == 0 => Class::Never("unspecified (0.0.0.0/8)"),
        // Alibaba Cloud's metadata and Azure's host endpoint sit outside link-local.
        IpAddr::V4(a) if a.octets() == [100, 100, 100, 200] || a.octets() == [168, 63, 129, 16] => {
            Class::Never("a cloud metadata address")
        }
        IpAddr::V4(a) if a.is_link_local() => {
            Class::Never("link-local (the cloud metadata address lives there)")
        }
        IpAddr::V4(a) if a.is_multicast() || a.is_broadcast() => Class::Never("multicast"),
        IpAddr::V4(a) if a.is_loopback() => Class::Loopback,
        IpAddr::V4(a) if a.is_private() => Class::Private,
        // Carrier-grade NAT space: another network's inside, not the internet.
        IpAddr::V4(a) if a.octets()[0] == 100 && (a.octets()[1] & 0xc0) == 64 => Class::Private,
        IpAddr::V6(a) if a.is_unspecified() => Class::Never("unspecified"),
        IpAddr::V6(a) if a == metadata_v6 => Class::Never("the cloud metadata address"),
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfe80 => Class::Never("link-local"),
        IpAddr::V6(a) if a.is_multicast() => Class::Never("multicast"),
        IpAddr::V6(a) if a.is_loopback() => Class::Loopback,
        // Unique local (fc00::/7) and the old site-local (fec0::/10).
        IpAddr::V6(a) if (a.segments()[0] & 0xfe00) == 0xfc00 => Class::Private,
        IpAddr::V6(a) if (a.segments()[0] & 0xffc0) == 0xfec0 => Class::Private,
        _ => Class::External,
    }
}

/// A URL's form: `http://` or `https://`, a host, no user info, no fragment, at most
/// [`MAX_URL`] characters. Returns the parsed URL.
pub fn check_form(url: &str) -> Result<reqwest::Url, String> {
    if url.len() > MAX_URL {
        return Err(format!(
            "the URL is {} characters long; use one of at most {MAX_URL}",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL contains spaces or control characters; percent-encode them".into());
    }
    let u = reqwest::Url::parse(url)
        .map_err(|e| format!("{url:?} is not a URL ({e}); use http(s)://host[:port]/path"))?;
    match u.scheme() {
        "http" => {}
        "https" if cfg!(feature = "tls") => {}
        "https" => {
            return Err(
                "https:// needs a build with the `tls` feature (cargo build --features tls); use http:// to a receiver on the LAN"
                    .into(),
            );
        }
        s => return Err(format!("{s}:// is not supported; use http:// or https://")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "the URL must not carry a user name or password; put a token in the path or query, the signature proves the sender"
                .into(),
        );
    }
    if u.fragment().is_some() {
        return Err("the URL must not have a #fragment; remove it".into());
    }
    if u.host().is_none() {
        return Err("the URL names no host; use http(s)://host[:port]/path".into());
    }
    Ok(u)
}

/// Checks a URL's form and where it leads now: an IP literal directly, a name resolved (within
/// `timeout`) with every address it resolves to checked.
pub async fn check_url(url: &str, policy: Policy, timeout: Duration) -> Result<(), String> {
    let u = check_form(url)?;
    let port = u.port_or_known_default().unwrap_or(80);
    match u.host() {
        Some(url::Host::Ipv4(a)) => policy.check(a.into()),
        Some(url::Host::Ipv6(a)) => policy.check(a.into()),
        Some(url::Host::Domain(d)) => {
            let d = d.to_string();
            let all: Vec<SocketAddr> =
                tokio::time::timeout(timeout, tokio::net::lookup_host((d.as_str(), port)))
                    .await
                    .map_err(|_| {
                        format!(
                            "resolving {d} took longer than {} s; check the name",
                            timeout.as_secs()
                        )
                    })?
                    .map_err(|e| format!("cannot resolve {d} ({e}); check the name"))?
                    .collect();
            if all.is_empty() {
                return Err(format!("{d} resolves to no address; check the name"));
            }
            for a in &all {
                policy
                    .check(a.ip())
                    .map_err(|e| format!("{d} resolves to {}: {e}", a.ip()))?;
            }
            Ok(())
        }
        None => Err("the URL names no host".into()),
    }
}

/// The client's resolver: keeps only the addresses the policy allows, refusing the name when
/// none is left. Since reqwest connects to exactly what this returns, a name cannot resolve
/// to one address for the check and another for the connection.
struct Guarded(Policy);

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                    format!("cannot resolve {host}: {e}").into()
                })?
                .collect();
            let mut why = None;
            let ok: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        why.get_or_insert(e);
                        false
                    }
                })
                .collect();
            if ok.is_empty() {
                let e = why.unwrap_or_else(|| "no address".into());
                return Err(format!("{host} resolves to no allowed address: {e}").into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The delivery client: no redirects (a 3xx is a failure), no proxy, the configured time
/// limit on the whole request, the guarded resolver.
pub fn client(cfg: &WebhookConfig) -> Result<reqwest::Client, String> {
    crate::tls::ensure_provider();
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("Parley/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(Guarded(Policy::of(cfg))));
    if cfg!(feature = "tls") {
        b = crate::tls::reqwest_tls(b, None)?;
    }
    b.build().map_err(|e| e.to_string())
}

/// Checks an IP-literal host of a URL before sending (the resolver never sees those).
pub fn check_literal(u: &reqwest::Url, policy: Policy) -> Result<(), String> {
    match u.host() {
        Some(url::Host::Ipv4(a)) => policy.check(a.into()),
        Some(url::Host::Ipv6(a)) => policy.check(a.into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn address_classes() {
        let all = Policy {
            loopback: true,
            private: true,
            external: true,
        };
        for never in [
            "0.0.0.0",
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "::",
            "224.0.0.1",
            "ff02::1",
            "255.255.255.255",
            "::ffff:169.254.169.254",
            "0.1.2.3",
            "100.100.100.200",
            "168.63.129.16",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(all.check(ip(never)).is_err(), "{never}");
        }
        // Loopback reached through a translator or tunnel is loopback.
        let no_loopback = Policy {
            loopback: false,
            private: true,
            external: true,
        };
        for lo in ["::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::1"] {
            assert!(no_loopback.check(ip(lo)).is_err(), "{lo}");
        }
        let default = Policy {
            loopback: false,
            private: true,
            external: true,
        };
        for lo in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            let e = default.check(ip(lo)).unwrap_err();
            assert!(e.contains("\"loopback\""), "{e}");
        }
        for ok in [
            "10.0.0.1",
            "192.168.2.3",
            "172.20.0.1",
            "fd12::1",
            "100.64.1.1",
            "8.8.8.8",
            "2001:db8::1",
        ] {
            assert!(default.check(ip(ok)).is_ok(), "{ok}");
        }
        let external_only = Policy {
            loopback: false,
            private: false,
            external: true,
        };
        assert!(
            external_only
                .check(ip("10.0.0.1"))
                .unwrap_err()
                .contains("\"private\"")
        );
        assert!(external_only.check(ip("fd12::1")).is_err());
        assert!(external_only.check(ip("93.184.216.34")).is_ok());
        let private_only = Policy {
            loopback: false,
            private: true,
            external: false,
        };
        assert!(
            private_only
                .check(ip("93.184.216.34"))
                .unwrap_err()
                .contains("\"external\"")
        );
    }

    #[test]
    fn url_forms() {
        assert!(check_form("http://erp.lan:8080/hooks?k=1").is_ok());
        for bad in [
            "ftp://erp.lan/x",
            "http://u:p@erp.lan/",
            "http://erp.lan/#x",
            "http://erp.lan/a b",
            "file:///etc/passwd",
            "erp.lan/x",
        ] {
            assert!(check_form(bad).is_err(), "{bad}");
        }
        let long = format!("http://erp.lan/{}", "a".repeat(MAX_URL));
        assert!(check_form(&long).is_err());
    }
}
