//! Connection caps: in all and per client address, per listener. A permit travels with the
//! connection's I/O, so a connection upgraded to a WebSocket keeps counting until it closes.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    sync::{Arc, Mutex},
};

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener has `max_connections` open.
    Full,
    /// The client's address has `max_connections_per_addr` open.
    AddressFull,
}

/// Counts open connections of one listener.
#[derive(Debug)]
pub struct ConnLimiter {
    max: u32,
    max_per_addr: u32,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: u32,
    by_addr: HashMap<IpAddr, u32>,
}

impl ConnLimiter {
    /// A limiter; 0 disables a cap.
    pub fn new(max: u32, max_per_addr: u32) -> Arc<Self> {
        Arc::new(Self {
            max,
            max_per_addr,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Count a new connection from `ip`, or say which cap it would exceed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let key = addr_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.max != 0 && open.total >= self.max {
            return Err(Refused::Full);
        }
        let mine = open.by_addr.entry(key).or_default();
        if self.max_per_addr != 0 && *mine >= self.max_per_addr {
            return Err(Refused::AddressFull);
        }
        *mine += 1;
        open.total += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            key,
        })
    }

    /// Open connections in all.
    pub fn open(&self) -> u32 {
        self.open.lock().map_or(0, |o| o.total)
    }
}

/// One counted connection; dropping it frees the place.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    key: IpAddr,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_addr.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_addr.remove(&self.key);
            }
        }
    }
}

/// The address a client is counted under: IPv4 (also IPv4-mapped) as is, IPv6 by its /64 (the
/// low 64 bits are the subscriber's to rotate), as the register throttle does (DEC-17).
pub fn addr_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_has_its_own_cap_within_the_global_one() {
        let limiter = ConnLimiter::new(3, 2);
        let a1 = limiter.admit(ip("10.0.0.1")).unwrap();
        let _a2 = limiter.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limiter.admit(ip("10.0.0.1")).unwrap_err(),
            Refused::AddressFull
        );
        let _b1 = limiter.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(limiter.admit(ip("10.0.0.3")).unwrap_err(), Refused::Full);
        drop(a1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_zero_disables_a_cap() {
        let limiter = ConnLimiter::new(0, 1);
        let _a = limiter.admit(ip("2001:db8:1:2::1")).unwrap();
        assert!(limiter.admit(ip("2001:db8:1:2::ffff")).is_err());
        assert!(limiter.admit(ip("2001:db8:1:3::1")).is_ok());
        let unlimited = ConnLimiter::new(0, 0);
        let held: Vec<_> = (0..100)
            .map(|_| unlimited.admit(ip("10.0.0.1")).unwrap())
            .collect();
        assert_eq!(unlimited.open(), 100);
        drop(held);
        assert_eq!(unlimited.open(), 0);
    }
}
