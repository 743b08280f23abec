//! A `HashMap` split into independently locked shards, and the poison-tolerant lock every
//! hub structure uses.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 16;

/// A `HashMap` split into independently locked shards.
#[derive(Debug)]
pub(super) struct Shards<K, V> {
    pub(super) hasher: RandomState,
    pub(super) shards: Box<[Mutex<HashMap<K, V>>]>,
}

impl<K: Hash + Eq, V> Shards<K, V> {
    pub(super) fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub(super) fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, HashMap<K, V>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        lock(&self.shards[i])
    }

    pub(super) fn all(&self) -> impl Iterator<Item = MutexGuard<'_, HashMap<K, V>>> {
        self.shards.iter().map(lock)
    }
}

/// Locks a mutex, ignoring poison: every critical section in the hub leaves its data
/// consistent at each step, so a panic elsewhere does not make it unusable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
