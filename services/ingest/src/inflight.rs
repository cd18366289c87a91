//! Uploads in flight without an API token, limited per client address and in all (issue 15
//! item 3, DEC-22). The CLI sends its `license_key` part after the tarball, so a submission on
//! the key path streams into the store before anything identifies it: these slots bound how
//! many such streams one address, and everyone together, can hold open on this replica.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use shared::http::ApiError;

use crate::errors;

/// The slots of one process.
#[derive(Debug)]
pub struct UploadSlots {
    per_addr: u32,
    global: u32,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: u32,
    by_addr: HashMap<String, u32>,
}

impl UploadSlots {
    /// Slots with these caps (0 disables a cap).
    pub fn new(per_addr: u32, global: u32) -> Arc<Self> {
        Arc::new(Self {
            per_addr,
            global,
            open: Mutex::new(Open::default()),
        })
    }

    /// Take a slot for `addr` (as [`crate::licenses::client_addr`] names it), or answer 429
    /// (this address is at its cap) or 503 (every slot is taken).
    pub fn acquire(self: &Arc<Self>, addr: &str) -> Result<UploadSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.by_addr.get(addr).copied().unwrap_or(0);
        if self.per_addr != 0 && mine >= self.per_addr {
            return Err(errors::uploads_in_flight(true, self.per_addr));
        }
        if self.global != 0 && open.total >= self.global {
            return Err(errors::uploads_in_flight(false, self.global));
        }
        *open.by_addr.entry(addr.to_owned()).or_default() += 1;
        open.total += 1;
        Ok(UploadSlot {
            slots: self.clone(),
            addr: addr.to_owned(),
        })
    }

    /// Slots taken in all.
    pub fn taken(&self) -> u32 {
        self.open.lock().map_or(0, |o| o.total)
    }
}

/// A taken slot, given back on drop (the request ended, however it ended).
#[derive(Debug)]
pub struct UploadSlot {
    slots: Arc<UploadSlots>,
    addr: String,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.by_addr.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use shared::http::ErrorCode;

    use super::*;

    #[test]
    fn an_address_at_its_cap_gets_429_and_a_full_hub_503() {
        let slots = UploadSlots::new(2, 3);
        let a1 = slots.acquire("1.2.3.4").unwrap();
        let _a2 = slots.acquire("1.2.3.4").unwrap();
        let refused = slots.acquire("1.2.3.4").unwrap_err();
        assert_eq!(refused.code, ErrorCode::RateLimited);
        let _b = slots.acquire("5.6.7.8").unwrap();
        let full = slots.acquire("9.9.9.9").unwrap_err();
        assert_eq!(full.code, ErrorCode::Unavailable);
        drop(a1);
        assert_eq!(slots.taken(), 2);
        assert!(slots.acquire("1.2.3.4").is_ok());
    }
}
