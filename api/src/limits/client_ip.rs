//! Which address a request comes from: the socket's peer, unless the peer
//! is a proxy the operator trusts (`KEYLEDGER_TRUSTED_PROXIES`), in which
//! case the address the proxy says it forwarded for, in the one header the
//! operator names (`KEYLEDGER_FORWARDED_HEADER`: `x-forwarded-for` or
//! `forwarded`); the other is ignored, since a proxy that writes only one
//! passes the other through from the client. A header from anyone else is
//! ignored too: it is the first thing a guesser would forge.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address range such as `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (address, prefix) = match raw.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (raw, None),
        };
        let network: IpAddr = address.parse().map_err(|_| format!("{raw:?} is not an address or CIDR range"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| format!("{raw:?} has a bad prefix length"))?
            }
        };
        Ok(Self { network, prefix })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        match (self.network, address) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                masked(u32::from(net).into(), 32, self.prefix) == masked(u32::from(a).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                masked(u128::from(net), 128, self.prefix) == masked(u128::from(a), 128, self.prefix)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, width: u8, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:1.2.3.4`) or a
/// NAT64 gateway (`64:ff9b::1.2.3.4`, RFC 6052's well-known prefix) as the
/// IPv4 address they carry: one IPv4 client, not a share of an IPv6 /64.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                return IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d));
            }
            v6.to_ipv4_mapped().map_or(address, IpAddr::V4)
        }
        v4 => v4,
    }
}

/// Which header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`.
    XForwardedFor,
    /// RFC 7239's `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

impl ForwardedHeader {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Some(Self::XForwardedFor),
            "forwarded" => Some(Self::Forwarded),
            _ => None,
        }
    }
}

/// A trusted proxy's forwarding header held an entry that is not an
/// address: the request is refused rather than charged to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnreadableForwarded;

/// Parses `KEYLEDGER_TRUSTED_PROXIES`: comma-separated addresses or ranges.
pub fn parse_trusted(raw: &str) -> Result<Vec<Cidr>, String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(Cidr::parse).collect()
}

/// An address as proxies write it: bare, `1.2.3.4:port`, `[v6]` or
/// `[v6]:port`, possibly quoted.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Some(rest) = raw.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(address) = raw.parse() {
        return Some(address);
    }
    // IPv4 with a port; a bare IPv6 address has more than one colon.
    let (host, port) = raw.rsplit_once(':')?;
    (!host.contains(':') && port.bytes().all(|b| b.is_ascii_digit())).then(|| host.parse().ok())?
}

/// The client's address: `peer`, or when `peer` is trusted, the nearest
/// untrusted address in the configured header (read from the right, since
/// each proxy appends). An entry that can't be read is an error: falling
/// back to the peer would charge the proxy, and every client behind it,
/// for one client's garbage.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[Cidr],
    header: ForwardedHeader,
) -> Result<IpAddr, UnreadableForwarded> {
    let peer = canonical(peer);
    let is_trusted = |a: IpAddr| trusted.iter().any(|c| c.contains(a));
    if !is_trusted(peer) {
        return Ok(peer);
    }
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let elements = |name: &str| -> Vec<String> {
        values(name).iter().flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>()).collect()
    };
    let chain: Vec<Option<String>> = match header {
        ForwardedHeader::XForwardedFor => elements("x-forwarded-for").into_iter().map(Some).collect(),
        ForwardedHeader::Forwarded => elements("forwarded")
            .into_iter()
            .map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then(|| value.to_owned())
                })
            })
            .collect(),
    };
    for hop in chain.iter().rev() {
        match hop.as_deref().and_then(parse_hop).map(canonical) {
            Some(address) if is_trusted(address) => continue,
            Some(address) => return Ok(address),
            None => return Err(UnreadableForwarded),
        }
    }
    Ok(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let range = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(range.contains("10.1.2.3".parse().unwrap()));
        assert!(range.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!range.contains("11.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nonsense").is_err());
    }

    fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
        let header =
            if headers.contains_key("forwarded") { ForwardedHeader::Forwarded } else { ForwardedHeader::XForwardedFor };
        super::client_ip(peer, headers, trusted, header).unwrap()
    }

    #[test]
    fn only_the_configured_header_counts_and_garbage_in_it_is_refused() {
        let trusted = parse_trusted("127.0.0.1").unwrap();
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let both = headers(&[("x-forwarded-for", "198.51.100.7"), ("forwarded", "for=203.0.113.5")]);
        assert_eq!(
            super::client_ip(proxy, &both, &trusted, ForwardedHeader::Forwarded),
            Ok("203.0.113.5".parse().unwrap())
        );
        assert_eq!(
            super::client_ip(proxy, &both, &trusted, ForwardedHeader::XForwardedFor),
            Ok("198.51.100.7".parse().unwrap())
        );
        // A proxy that writes only `Forwarded` passes the client's own
        // `X-Forwarded-For` through: it names nobody.
        let forged = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(super::client_ip(proxy, &forged, &trusted, ForwardedHeader::Forwarded), Ok(proxy));
        let garbage = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(
            super::client_ip(proxy, &garbage, &trusted, ForwardedHeader::XForwardedFor),
            Err(UnreadableForwarded)
        );
        let garbage = headers(&[("forwarded", "for=unknown-host;proto=https")]);
        assert_eq!(super::client_ip(proxy, &garbage, &trusted, ForwardedHeader::Forwarded), Err(UnreadableForwarded));
        // From an untrusted peer no header is read at all.
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let garbage = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(super::client_ip(stranger, &garbage, &trusted, ForwardedHeader::XForwardedFor), Ok(stranger));
    }

    #[test]
    fn nat64_and_mapped_addresses_are_their_ipv4_address() {
        assert_eq!(canonical("64:ff9b::c000:221".parse().unwrap()), "192.0.2.33".parse::<IpAddr>().unwrap());
        assert_eq!(canonical("::ffff:192.0.2.33".parse().unwrap()), "192.0.2.33".parse::<IpAddr>().unwrap());
        assert_eq!(canonical("2001:db8::1".parse().unwrap()), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_forwarded_address_counts_only_from_a_trusted_peer() {
        let trusted = parse_trusted("127.0.0.1, 10.0.0.0/8").unwrap();
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            client_ip("203.0.113.9".parse().unwrap(), &spoofed, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip("127.0.0.1".parse().unwrap(), &spoofed, &trusted), "1.2.3.4".parse::<IpAddr>().unwrap());
        // The client's own claim at the left is skipped past the nearest untrusted hop.
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &chain, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &forwarded, &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let forwarded = headers(&[("forwarded", "for=192.0.2.60:1234, for=10.0.0.3")]);
        assert_eq!(
            client_ip("10.0.0.2".parse().unwrap(), &forwarded, &trusted),
            "192.0.2.60".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip("127.0.0.1".parse().unwrap(), &HeaderMap::new(), &trusted),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }
}
