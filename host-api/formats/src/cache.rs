//! A small bounded cache of metadata tables (qcow2 L2 tables, VMDK grain tables).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Keeps at most `capacity` tables keyed by their file offset; evicts the least recently used.
pub struct TableCache<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

struct Inner<T> {
    map: HashMap<u64, (Arc<T>, u64)>,
    tick: u64,
}

impl<T> TableCache<T> {
    /// A cache of at most `capacity` (at least one) tables.
    pub fn new(capacity: usize) -> Self {
        TableCache {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                tick: 0,
            }),
            capacity: capacity.max(1),
        }
    }

    /// The table at `key`, loading it with `load` on a miss. The lock is not held while loading,
    /// so concurrent readers never wait on each other's I/O (at worst both load the same table).
    pub fn get_or_load<E>(
        &self,
        key: u64,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        {
            // A panic elsewhere cannot leave the map inconsistent (every update is one insert or
            // remove), so a poisoned lock is still usable.
            let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            inner.tick += 1;
            let tick = inner.tick;
            if let Some((table, used)) = inner.map.get_mut(&key) {
                *used = tick;
                return Ok(Arc::clone(table));
            }
        }
        let table = Arc::new(load()?);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.tick += 1;
        let tick = inner.tick;
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            let oldest = inner
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k);
            if let Some(oldest) = oldest {
                inner.map.remove(&oldest);
            }
        }
        inner.map.insert(key, (Arc::clone(&table), tick));
        Ok(table)
    }
}

/// The most recently decompressed cluster or grain, so sequential small reads inside one
/// compressed unit decompress it once (qcow2 compressed clusters, VMDK compressed grains).
pub struct LastDecoded<K> {
    last: Mutex<Option<(K, Vec<u8>)>>,
}

impl<K: PartialEq + Copy> Default for LastDecoded<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: PartialEq + Copy> LastDecoded<K> {
    /// An empty cache.
    pub fn new() -> Self {
        LastDecoded {
            last: Mutex::new(None),
        }
    }

    /// Copies bytes `[offset, offset + out.len())` of the unit `key`, decoding it with `decode`
    /// unless it is the one decoded last. `decode` must return at least that many bytes.
    pub fn copy_out(
        &self,
        key: K,
        offset: usize,
        out: &mut [u8],
        decode: impl FnOnce() -> crate::Result<Vec<u8>>,
    ) -> crate::Result<()> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((k, data)) = last.as_ref()
            && *k == key
        {
            out.copy_from_slice(&data[offset..offset + out.len()]);
            return Ok(());
        }
        let data = decode()?;
        out.copy_from_slice(&data[offset..offset + out.len()]);
        *last = Some((key, data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let cache = TableCache::new(2);
        let load = |v: u32| move || Ok::<_, ()>(v);
        cache.get_or_load(1, load(1)).unwrap();
        cache.get_or_load(2, load(2)).unwrap();
        cache.get_or_load(1, load(99)).unwrap(); // hit: 1 is now the most recent
        cache.get_or_load(3, load(3)).unwrap(); // evicts 2
        assert_eq!(*cache.get_or_load(1, load(100)).unwrap(), 1);
        assert_eq!(*cache.get_or_load(2, load(200)).unwrap(), 200);
    }
}
