//! The pool of local RTP ports.
//!
//! [`PortPool`] owns which even ports of a configured range are handed out to calls. RTP uses an
//! even port and RTCP, when not multiplexed, the odd port above it (RFC 3550 §11), so the pool hands
//! out only even ports `p` with `p + 1` also inside the range. Allocation is round-robin, starting
//! after the port allocated last, so a port just released is not reused at once (late packets of the
//! previous call would otherwise land in the next one).
//!
//! A pure data structure with no I/O: the shell wraps it in a mutex, takes a [`PortLease`]
//! ([`PortPool::lease`]), binds the port it gets, and on a bind failure drops the lease and asks
//! for the next. The lease returns its port when dropped, also while a panicking call task unwinds.

use std::sync::{Mutex, PoisonError};

use thiserror::Error;

/// Why a port range is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The low end must be an even port (RFC 3550 §11) and not 0.
    #[error("RTP port range must start at an even, non-zero port, not {0}")]
    BadLow(u16),
    /// The range must hold at least one even port and the odd port above it: `low < high`.
    #[error("RTP port range {low}-{high} is empty: low must be below high")]
    EmptyRange {
        /// Configured low end.
        low: u16,
        /// Configured high end.
        high: u16,
    },
}

/// Round-robin pool of even UDP ports for RTP (RFC 3550 §11).
#[derive(Debug, Clone)]
pub struct PortPool {
    low: u16,
    /// `in_use[i]`: port `low + 2 i` is allocated.
    in_use: Vec<bool>,
    allocated: usize,
    /// Slot to try first on the next allocation: the one after the last allocated.
    cursor: usize,
}

impl PortPool {
    /// Creates a pool of the even ports `p` with `low ≤ p` and `p + 1 ≤ high` (both inclusive).
    ///
    /// Fails if `low` is odd or 0, or if `low ≥ high`.
    pub fn new(low: u16, high: u16) -> Result<Self, Error> {
        if low == 0 || !low.is_multiple_of(2) {
            return Err(Error::BadLow(low));
        }
        if low >= high {
            return Err(Error::EmptyRange { low, high });
        }
        let slots = usize::from(high - low).div_ceil(2);
        Ok(PortPool {
            low,
            in_use: vec![false; slots],
            allocated: 0,
            cursor: 0,
        })
    }

    /// Allocates the next free even port after the last one allocated (wrapping to the bottom of
    /// the range), or `None` when every port is allocated.
    pub fn allocate(&mut self) -> Option<u16> {
        let n = self.in_use.len();
        let slot = (0..n)
            .map(|i| (self.cursor + i) % n)
            .find(|&slot| !self.in_use[slot])?;
        self.in_use[slot] = true;
        self.allocated += 1;
        self.cursor = (slot + 1) % n;
        Some(self.port_of(slot))
    }

    /// Returns `port` to the pool; returns false (and changes nothing) if it is not an allocated port
    /// of this pool.
    pub fn release(&mut self, port: u16) -> bool {
        let Some(slot) = self.slot_of(port) else {
            return false;
        };
        if !self.in_use[slot] {
            return false;
        }
        self.in_use[slot] = false;
        self.allocated -= 1;
        true
    }

    /// Ports currently free.
    pub fn available(&self) -> usize {
        self.in_use.len() - self.allocated
    }

    /// Ports in the pool, free or not.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Whether `port` is currently allocated from this pool.
    pub fn is_allocated(&self, port: u16) -> bool {
        self.slot_of(port).is_some_and(|slot| self.in_use[slot])
    }

    /// Allocates a port from the pool behind `pool` as a [`PortLease`], which releases it when
    /// dropped; `None` when every port is in use. A poisoned mutex (a call task panicked while
    /// holding it) is recovered: the pool's state is updated in single steps, never left half-done.
    pub fn lease(pool: &Mutex<PortPool>) -> Option<PortLease<'_>> {
        let port = pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allocate()?;
        Some(PortLease { pool, port })
    }

    fn port_of(&self, slot: usize) -> u16 {
        // slot < in_use.len() ≤ (u16::MAX − low) / 2 + 1, so this stays within u16.
        self.low + (slot as u16) * 2
    }

    fn slot_of(&self, port: u16) -> Option<usize> {
        let offset = port.checked_sub(self.low)?;
        let slot = usize::from(offset / 2);
        (offset.is_multiple_of(2) && slot < self.in_use.len()).then_some(slot)
    }
}

/// One call's RTP port (and the odd port above it), returned to its pool when dropped, also when
/// the call's task unwinds from a panic or the pool's mutex is poisoned.
#[derive(Debug)]
pub struct PortLease<'a> {
    pool: &'a Mutex<PortPool>,
    port: u16,
}

impl PortLease<'_> {
    /// The leased (even) RTP port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease<'_> {
    fn drop(&mut self) {
        self.pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .release(self.port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_ranges() {
        assert_eq!(
            PortPool::new(10_001, 10_010).err(),
            Some(Error::BadLow(10_001))
        );
        assert_eq!(PortPool::new(0, 10).err(), Some(Error::BadLow(0)));
        assert_eq!(
            PortPool::new(10_000, 10_000).err(),
            Some(Error::EmptyRange {
                low: 10_000,
                high: 10_000
            })
        );
        assert!(PortPool::new(10_000, 9_000).is_err());
        assert_eq!(PortPool::new(10_000, 10_001).map(|p| p.capacity()), Ok(1));
        assert_eq!(PortPool::new(10_000, 10_002).map(|p| p.capacity()), Ok(1));
        assert_eq!(PortPool::new(10_000, 10_003).map(|p| p.capacity()), Ok(2));
        assert_eq!(PortPool::new(65_534, 65_535).map(|p| p.capacity()), Ok(1));
    }

    #[test]
    fn even_only_round_robin_with_wrap_and_exhaustion() {
        let mut pool = PortPool::new(20_000, 20_009).expect("valid range");
        assert_eq!(pool.capacity(), 5);
        let first: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(first, vec![20_000, 20_002, 20_004, 20_006, 20_008]);
        assert_eq!(pool.available(), 0);
        assert_eq!(pool.allocate(), None);
        // Release two; the next allocation continues after the last allocated (wrapping), so the
        // lower released port comes first here, then the other.
        assert!(pool.release(20_004));
        assert!(pool.release(20_000));
        assert_eq!(pool.available(), 2);
        assert_eq!(pool.allocate(), Some(20_000));
        assert_eq!(pool.allocate(), Some(20_004));
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn a_released_port_is_not_reused_at_once() {
        let mut pool = PortPool::new(30_000, 30_007).expect("valid range");
        let a = pool.allocate();
        assert_eq!(a, Some(30_000));
        assert!(pool.release(30_000));
        assert_eq!(pool.allocate(), Some(30_002));
        assert_eq!(pool.allocate(), Some(30_004));
        assert_eq!(pool.allocate(), Some(30_006));
        // Wrapped around: the released port is reused only now.
        assert_eq!(pool.allocate(), Some(30_000));
        assert!(pool.is_allocated(30_000));
    }

    #[test]
    fn release_ignores_foreign_and_free_ports() {
        let mut pool = PortPool::new(40_000, 40_010).expect("valid range");
        let p = pool.allocate().expect("free port");
        assert!(!pool.release(p + 1), "odd port");
        assert!(!pool.release(39_998), "below range");
        assert!(
            !pool.release(40_010),
            "RTCP port would be outside the range"
        );
        assert!(!pool.release(40_002), "not allocated");
        assert!(pool.release(p));
        assert!(!pool.release(p), "double release");
        assert_eq!(pool.available(), pool.capacity());
    }

    #[test]
    fn top_of_the_port_space() {
        let mut pool = PortPool::new(65_530, 65_535).expect("valid range");
        let all: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(all, vec![65_530, 65_532, 65_534]);
    }

    #[test]
    fn a_lease_returns_its_port_even_after_the_mutex_was_poisoned() {
        let pool = Mutex::new(PortPool::new(10_000, 10_003).unwrap());
        let lease = PortPool::lease(&pool).unwrap();
        assert_eq!(lease.port(), 10_000);
        // Another call's task panics while it holds the pool.
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = pool.lock().unwrap();
                panic!("a call task panics holding the port pool");
            })
            .join()
            .is_err()
        });
        assert!(poisoned && pool.is_poisoned());
        drop(lease);
        let pool_state = pool.lock().unwrap_or_else(PoisonError::into_inner);
        assert_eq!(pool_state.available(), 2, "the port leaked");
        drop(pool_state);
        // New calls still get ports.
        let a = PortPool::lease(&pool).unwrap();
        let b = PortPool::lease(&pool).unwrap();
        assert_ne!(a.port(), b.port());
        assert!(PortPool::lease(&pool).is_none());
    }
}
