//! A map from `i64` ids to values that iterates in id order, as a `BTreeMap` would, but keeps
//! ids from 0 up in a vector indexed by id: a workflow's ids are mostly sequences from 0
//! (initial rows, request ids, the subjects events announce), and a lookup there is an index,
//! not a tree walk. Any other id (negative, or far past the vector's end) goes to an ordered map,
//! so a far-off id costs no memory for the ids between.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A hash map for lookups by small integer keys that is **never iterated**: what it holds is
/// found by key, so its order cannot reach a run's behaviour (anything iterated is ordered).
/// The hash is fixed (no per-process seed), so even its memory layout is the same every run.
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A set found by key and never iterated, as [`KeyMap`].
pub type KeySet<K> = HashSet<K, BuildHasherDefault<KeyHasher>>;

/// A multiplicative hash over the key's integers (as rustc's FxHash): one multiply and a
/// rotate per word, enough for ids and indexes, which nobody picks to collide.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// How far past its end the vector grows to take an id (or as far as its length, if longer).
const GROWTH: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct IdMap<T> {
    /// The value of id `i` at index `i`, for `0 <= i < dense.len()`.
    dense: Vec<Option<T>>,
    /// Ids below 0 or at or above `dense.len()`.
    sparse: BTreeMap<i64, T>,
}

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        Self { dense: Vec::new(), sparse: BTreeMap::new() }
    }
}

impl<T> IdMap<T> {
    pub fn get(&self, id: i64) -> Option<&T> {
        match usize::try_from(id) {
            Ok(i) if i < self.dense.len() => self.dense[i].as_ref(),
            _ => self.sparse.get(&id),
        }
    }

    /// Put `value` at `id`: the value it replaces.
    pub fn insert(&mut self, id: i64, value: T) -> Option<T> {
        let Ok(i) = usize::try_from(id) else { return self.sparse.insert(id, value) };
        if i >= self.dense.len() {
            if i - self.dense.len() > GROWTH.max(self.dense.len()) {
                return self.sparse.insert(id, value);
            }
            // Grow, taking over the map's values in the range the vector now covers.
            let from = self.dense.len();
            self.dense.resize_with(i + 1, || None);
            if self.sparse.range(from as i64..).next().is_some() {
                let moved: Vec<i64> = self.sparse.range(from as i64..=i as i64).map(|(k, _)| *k).collect();
                for k in moved {
                    self.dense[k as usize] = self.sparse.remove(&k);
                }
            }
        }
        self.dense[i].replace(value)
    }

    /// The value at `id`, inserting `value` first when there is none.
    pub fn get_or_insert(&mut self, id: i64, value: T) -> &T {
        match usize::try_from(id) {
            Ok(i) if i < self.dense.len() => self.dense[i].get_or_insert(value),
            _ if self.sparse.contains_key(&id) => &self.sparse[&id],
            _ => {
                self.insert(id, value);
                self.get(id).expect("inserted just now")
            }
        }
    }

    /// Every id and its value, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &T)> + '_ {
        let below = self.sparse.range(..0).map(|(k, v)| (*k, v));
        let dense = self.dense.iter().enumerate().filter_map(|(i, v)| v.as_ref().map(|v| (i as i64, v)));
        let above = self.sparse.range(self.dense.len() as i64..).map(|(k, v)| (*k, v));
        below.chain(dense).chain(above)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflow::expr::Value;

    /// Rows by id keep the ordered map's behaviour whichever part holds them: negative and
    /// far-off ids, a vector that grows over ids the map held, iteration in id order.
    #[test]
    fn rows_are_found_and_iterated_in_id_order_wherever_they_are_kept() {
        let row = |v: i64| -> Box<[Value]> { vec![Value::Int(v)].into_boxed_slice() };
        let mut m = IdMap::<Box<[Value]>>::default();
        let far = 1_000_000_000;
        for id in [5, -3, far, 0, 7000, 2] {
            assert_eq!(m.insert(id, row(id)), None, "{id} is new");
        }
        // 7000 was too far past the vector's end (6 slots) to grow it; 4000, then 8000, grow
        // it, and it takes 7000 over.
        assert!(m.dense.len() == 6 && m.sparse.contains_key(&7000));
        assert_eq!((m.insert(4000, row(1)), m.insert(8000, row(1))), (None, None));
        assert!(m.dense.len() == 8001 && !m.sparse.contains_key(&7000), "taken over by the vector");
        assert_eq!(m.get(7000), Some(&row(7000)));
        assert_eq!(m.insert(5, row(50)), Some(row(5)), "replacing returns the old row");
        assert_eq!(m.insert(7000, row(70)), Some(row(7000)));
        let ids: Vec<i64> = m.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [-3, 0, 2, 5, 4000, 7000, 8000, far]);
        assert_eq!((m.get(-3), m.get(far), m.get(1), m.get(-1)), (Some(&row(-3)), Some(&row(far)), None, None));
    }
}
