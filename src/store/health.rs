//! Whether a store takes writes, shared between its callers (who check it before every
//! write) and its writer thread (which marks it down when a commit fails and up again when a
//! probe succeeds). Changes are logged once each, not once per refused write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::StoreError;

/// Up, or down with a reason.
#[derive(Debug)]
pub struct Health {
    /// Where the store is, for the log (`db ./hubbub.db`).
    name: String,
    up: AtomicBool,
    reason: Mutex<Arc<str>>,
    /// Writes refused or lost, for `hubbub_store_dropped_total`.
    dropped: AtomicU64,
}

impl Health {
    /// A store that is up.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            up: AtomicBool::new(true),
            reason: Mutex::new(Arc::from("")),
            dropped: AtomicU64::new(0),
        }
    }

    /// `Ok` while up.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.up.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(StoreError::Down(self.reason()))
        }
    }

    /// Whether the store is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Why the store is down (empty while up).
    pub fn reason(&self) -> Arc<str> {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the store down; logs the first time.
    pub fn down(&self, reason: &str) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = Arc::from(reason);
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::error!(
                "store {}: {reason}; history rooms, direct messages and notifications answer \
                 `unavailable` until it can write again (live delivery goes on)",
                self.name
            );
        }
    }

    /// Marks the store up again; logs if it was down.
    pub fn up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!("store {}: writing again", self.name);
        }
    }

    /// Counts `n` writes refused or lost.
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Writes refused or lost so far.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_says_why_and_up_clears_it() {
        let h = Health::new("test");
        assert!(h.check().is_ok());
        h.down("database or disk is full");
        assert_eq!(
            h.check(),
            Err(StoreError::Down("database or disk is full".into()))
        );
        h.up();
        assert!(h.check().is_ok());
    }
}
