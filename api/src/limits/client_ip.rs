//! Which address a request comes from: the socket's peer, unless the peer
//! is a proxy the operator trusts (`KEYLEDGER_TRUSTED_PROXIES`), in which
//! case the address the proxy says it forwarded for. A header from anyone
//! else is ignored: it is the first thing a guesser would forge.

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

/// IPv4 addresses seen through an IPv6 socket (`::ffff:1.2.3.4`) as IPv4.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

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
/// untrusted address in `X-Forwarded-For` (read from the right, since each
/// proxy appends), else in `Forwarded: for=`. An entry that can't be read
/// ends the walk at the peer: what lies to its left can't be told from a
/// client's own claim.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |a: IpAddr| trusted.iter().any(|c| c.contains(a));
    if !is_trusted(peer) {
        return peer;
    }
    let values = |name: &str| -> Vec<String> {
        headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect()
    };
    let forwarded_for: Vec<String> =
        values("x-forwarded-for").iter().flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>()).collect();
    let chain: Vec<String> = if !forwarded_for.is_empty() {
        forwarded_for
    } else {
        values("forwarded")
            .iter()
            .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (name, value) = pair.trim().split_once('=')?;
                    name.trim().eq_ignore_ascii_case("for").then(|| value.to_owned())
                })
            })
            .collect()
    };
    for hop in chain.iter().rev() {
        match parse_hop(hop).map(canonical) {
            Some(address) if is_trusted(address) => continue,
            Some(address) => return address,
            None => return peer,
        }
    }
    peer
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
