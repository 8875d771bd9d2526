//! A map that keeps at most a fixed number of entries: the least recently used goes when a
//! new one would pass the bound, so the viewer's caches stay bounded however long it runs.

use std::hash::Hash;

use indexmap::IndexMap;

/// Entries in use order (the most recently used last), at most `CAP` (≥ 1) of them.
#[derive(Debug, Clone)]
pub struct Bounded<K, V, const CAP: usize> {
    map: IndexMap<K, V>,
}

impl<K, V, const CAP: usize> Default for Bounded<K, V, CAP> {
    fn default() -> Self {
        Self {
            map: IndexMap::new(),
        }
    }
}

impl<K: Hash + Eq, V, const CAP: usize> Bounded<K, V, CAP> {
    /// The entry of `key`, marked most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let i = self.touch(key)?;
        self.map.get_index(i).map(|(_, v)| v)
    }

    /// The entry of `key` without marking it used.
    pub fn peek(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    /// Puts `value` under `key` as the most recently used; drops the least recently used
    /// beyond the bound.
    pub fn insert(&mut self, key: K, value: V) {
        let (i, _) = self.map.insert_full(key, value);
        let last = self.map.len() - 1;
        self.map.move_index(i, last);
        while self.map.len() > CAP.max(1) {
            self.map.shift_remove_index(0);
        }
    }

    /// The entry of `key`, made by `make` if absent; marked most recently used.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &V {
        if self.touch(&key).is_none() {
            self.insert(key, make());
        }
        self.map.last().map(|(_, v)| v).expect("just used")
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.shift_remove(key)
    }

    /// Entries from the least to the most recently used.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.map.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        CAP.max(1)
    }

    /// Moves `key` to the most recently used end; its new index.
    fn touch(&mut self, key: &K) -> Option<usize> {
        let i = self.map.get_index_of(key)?;
        let last = self.map.len() - 1;
        self.map.move_index(i, last);
        Some(last)
    }
}

impl<K: Hash + Eq, V, const CAP: usize> Extend<(K, V)> for Bounded<K, V, CAP> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, items: I) {
        for (k, v) in items {
            self.insert(k, v);
        }
    }
}
