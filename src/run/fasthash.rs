//! A fast, unseeded hasher for the maps of the per-delivery path, in place
//! of SipHash. Only for maps whose keys a peer cannot choose to collide
//! harmfully: keys the driver inserts itself (virtual-user numbers, its own
//! names, event names) or keys bounded by the run (a mark's sender, checked
//! against the run's virtual-user count before it is inserted). A peer may
//! still look keys up; a lookup costs one probe sequence over keys the
//! driver chose.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A [`HashMap`] with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-rotate hashing, one word at a time (the scheme of rustc's
/// FxHasher): a few cycles per integer key, where SipHash takes tens of ns.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

/// An odd constant with well-spread bits (2^64 / φ).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The map takes its bucket from the low bits and its tag from the
        // top 7: fold the well-mixed high half into the low one.
        self.hash ^ (self.hash >> 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    #[test]
    fn sequential_keys_spread_over_buckets_and_tags() {
        let build = BuildHasherDefault::<FastHasher>::default();
        let hashes: Vec<u64> = (0u32..4096).map(|vu| build.hash_one(vu)).collect();
        let buckets: HashSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let tags: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(buckets.len() > 2048, "{} distinct buckets", buckets.len());
        assert_eq!(tags.len(), 128, "every 7-bit tag used");
        // Strings of equal length differing in the last byte differ.
        assert_ne!(build.hash_one("newMessage"), build.hash_one("newMessagf"));
        let mut map: FastMap<u32, u32> = FastMap::default();
        map.insert(7, 1);
        assert_eq!(map.get(&7), Some(&1));
    }
}
