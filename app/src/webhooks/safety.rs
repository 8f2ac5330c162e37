//! What a webhook may call. A tenant must not be able to make keyledger
//! reach into the network it runs in: URLs whose host is, or resolves to,
//! a loopback, private, link-local, shared (CGNAT), multicast or otherwise
//! special address are refused, when the endpoint is created and again at
//! every delivery (after DNS, by the resolver the sender's client uses, so
//! a name that changes its answer between the check and the call is
//! caught). Plain `http://` is allowed only where private networks are
//! (`KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true`, for tests and closed
//! networks).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// How long the check at creation waits for DNS.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    /// Told to the caller, so the parser's error is in the message (and
    /// not a source, which would repeat it in a cause chain).
    #[error("`url` is not an absolute URL: {0}")]
    Malformed(url::ParseError),
    #[error("`url` is not an absolute URL: longer than 2048 characters")]
    TooLong,
    #[error("`url` must use https (plain http only with KEYLEDGER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true)")]
    Scheme,
    #[error("`url` must not carry a user name or password")]
    Credentials,
    #[error("`url` must name a host")]
    NoHost,
    #[error("`url` points at a loopback, private, link-local or otherwise internal address ({0}); webhooks go to the public internet")]
    Private(IpAddr),
    #[error("`url`'s host {0} does not resolve")]
    Unresolved(String),
}

/// Checks a webhook URL's form, and its host if it is an address.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, UrlError> {
    if raw.len() > 2048 {
        return Err(UrlError::TooLong);
    }
    let url = Url::parse(raw).map_err(UrlError::Malformed)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(UrlError::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    match url.host() {
        None => Err(UrlError::NoHost),
        Some(Host::Ipv4(ip)) => allowed(IpAddr::V4(ip), allow_private).map(|()| url.clone()),
        Some(Host::Ipv6(ip)) => allowed(IpAddr::V6(ip), allow_private).map(|()| url.clone()),
        Some(Host::Domain(_)) => Ok(url),
    }
}

/// Resolves a checked URL's host now: every address it gives must be
/// allowed (the check at creation; deliveries check again as they connect).
pub async fn check_resolved(url: &Url, allow_private: bool) -> Result<(), UrlError> {
    let Some(Host::Domain(domain)) = url.host() else { return Ok(()) };
    let port = url.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((domain, port)));
    let addresses: Vec<SocketAddr> = match lookup.await {
        Ok(Ok(found)) => found.collect(),
        _ => return Err(UrlError::Unresolved(domain.to_owned())),
    };
    if addresses.is_empty() {
        return Err(UrlError::Unresolved(domain.to_owned()));
    }
    addresses.iter().try_for_each(|address| allowed(address.ip(), allow_private))
}

fn allowed(ip: IpAddr, allow_private: bool) -> Result<(), UrlError> {
    if allow_private || is_public(ip) {
        Ok(())
    } else {
        Err(UrlError::Private(ip))
    }
}

/// Whether `ip` is an ordinary address of the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        // IPv4-mapped (::ffff:a.b.c.d) and -compatible (::a.b.c.d)
        // addresses reach the IPv4 address inside; so may 6to4's.
        IpAddr::V6(ip) => match (ip.to_ipv4(), six_to_four(ip)) {
            (Some(v4), _) if ip.segments()[..5] == [0; 5] => is_public_v4(v4),
            (_, Some(v4)) => is_public_v4(v4) && is_public_v6(ip),
            _ => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0                                  // "this network"
        || (a == 100 && (64..128).contains(&b))     // shared address space (CGNAT), RFC 6598
        || (a == 192 && b == 0 && c == 0)           // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19))       // benchmarking
        || a >= 240) // reserved
}

/// The IPv4 address inside a 6to4 address (2002:a.b.c.d::/48).
fn six_to_four(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = ip.segments();
    (segments[0] == 0x2002).then(|| {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let segments = ip.segments();
    let first = segments[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00            // unique local
        || (first & 0xffc0) == 0xfe80            // link-local
        || (first & 0xffc0) == 0xfec0            // site-local (deprecated)
        || first == 0x2001 && segments[1] == 0xdb8       // documentation
        || first == 0x2001 && segments[1] == 0           // Teredo: tunnels to an IPv4 address
        || first == 0x0064 && segments[1] == 0xff9b      // NAT64 into IPv4 space (and 64:ff9b:1::/48)
        || segments[..6] == [0, 0, 0, 0, 0, 0xffff]       // IPv4-mapped that to_ipv4 did not catch
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0]       // IPv4-translated, ::ffff:0:a.b.c.d (RFC 2765)
        || first == 0x0100 && segments[1..4] == [0, 0, 0] // discard-only, 100::/64 (RFC 6666)
        || first == 0x2001 && segments[1] == 0x2 && segments[2] == 0 // benchmarking, 2001:2::/48
        || first == 0x2001 && (segments[1] & 0xfff0) == 0x10         // ORCHID, 2001:10::/28
        || first == 0x2001 && (segments[1] & 0xfff0) == 0x20         // ORCHIDv2, 2001:20::/28
        || (first & 0xfff0) == 0x3ff0                                 // documentation, 3fff::/20
        || first == 0x5f00) // segment routing SIDs, 5f00::/16
}

/// The DNS resolver of the webhook sender's HTTP client: resolves as the
/// system does, then drops every address that is not public, and fails
/// when none is left, so a delivery can never connect to one.
#[derive(Debug, Clone, Copy)]
pub struct SafeResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> =
                found.iter().copied().filter(|address| allow_private || is_public(address.ip())).collect();
            if kept.is_empty() {
                let message = format!("{host} resolves to no public address ({found:?}); refused");
                return Err(message.into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for url in [
            "https://127.0.0.1/hook",
            "https://10.1.2.3/",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/",
            "https://224.0.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[::127.0.0.1]/",
            "https://[::169.254.169.254]/",
            "https://[2002:7f00:1::]/",
            "https://[2002:a9fe:a9fe::1]/",
            "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
            "https://[::ffff:0:7f00:1]/",
            "https://[::ffff:0:a9fe:a9fe]/",
            "https://[100::1]/",
            "https://[64:ff9b:1::7f00:1]/",
            "https://[2001:2::1]/",
            "https://[2001:10::1]/",
            "https://[3fff::1]/",
        ] {
            assert!(matches!(check_url(url, false), Err(UrlError::Private(_))), "{url}");
            assert!(check_url(url, true).is_ok(), "{url} with private networks allowed");
        }
        assert!(check_url("https://93.184.215.14/hook", false).is_ok());
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("https://[2606:4700::1111]/", false).is_ok());
    }

    #[test]
    fn only_https_without_credentials() {
        assert_eq!(check_url("http://example.com/", false), Err(UrlError::Scheme));
        assert!(check_url("http://example.com/", true).is_ok());
        assert_eq!(check_url("ftp://example.com/", true), Err(UrlError::Scheme));
        assert_eq!(check_url("https://user:pw@example.com/", false), Err(UrlError::Credentials));
        assert!(matches!(check_url("not a url", false), Err(UrlError::Malformed(_))));
    }
}
