//! How many connections one client address, and everyone together, may
//! hold open. Each open connection costs a file descriptor and a task; a
//! few thousand stalled sockets from one host must not use them all up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Per client address; 0 for none.
    pub per_ip: u32,
    /// For the whole server; 0 for none.
    pub total: u32,
}

/// Counts open connections. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    caps: ConnectionCaps,
    open: Arc<Mutex<Open>>,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_ip: HashMap<IpAddr, u32>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerIp,
    Total,
}

/// One open connection; dropping it gives its place back.
#[derive(Debug)]
pub struct ConnectionSlot {
    ip: IpAddr,
    open: Arc<Mutex<Open>>,
}

impl ConnectionLimits {
    pub fn new(caps: ConnectionCaps) -> Self {
        Self { caps, open: Arc::default() }
    }

    /// Opens a connection from `ip`; an `exempt` address (a trusted proxy)
    /// counts toward the total only.
    pub fn try_open(&self, ip: IpAddr, exempt: bool) -> Result<ConnectionSlot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.caps.total > 0 && open.total >= self.caps.total {
            return Err(Refusal::Total);
        }
        let from_ip = open.by_ip.entry(ip).or_default();
        if self.caps.per_ip > 0 && *from_ip >= self.caps.per_ip && !exempt {
            return Err(Refusal::PerIp);
        }
        *from_ip += 1;
        open.total += 1;
        Ok(ConnectionSlot { ip, open: self.open.clone() })
    }

    /// Open connections: all of them, and from `ip`.
    #[cfg(test)]
    fn counts(&self, ip: IpAddr) -> (u32, u32) {
        let open = self.open.lock().unwrap();
        (open.total, open.by_ip.get(&ip).copied().unwrap_or(0))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.total -= 1;
        if let Some(count) = open.by_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // Addresses without connections take no memory.
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_own_cap_and_places_come_back() {
        let limits = ConnectionLimits::new(ConnectionCaps { per_ip: 2, total: 3 });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = limits.try_open(a, false).unwrap();
        let _second = limits.try_open(a, false).unwrap();
        assert_eq!(limits.try_open(a, false).unwrap_err(), Refusal::PerIp);
        let _third = limits.try_open(b, false).unwrap();
        assert_eq!(limits.try_open(b, false).unwrap_err(), Refusal::Total);
        drop(first);
        assert_eq!(limits.counts(a), (2, 1));
        limits.try_open(a, false).unwrap();
    }

    #[test]
    fn zero_means_no_cap() {
        let limits = ConnectionLimits::new(ConnectionCaps { per_ip: 0, total: 0 });
        let ip: IpAddr = "::1".parse().unwrap();
        let slots: Vec<_> = (0..1000).map(|_| limits.try_open(ip, false).unwrap()).collect();
        assert_eq!(limits.counts(ip), (1000, 1000));
        drop(slots);
        assert_eq!(limits.counts(ip), (0, 0));
    }
}
