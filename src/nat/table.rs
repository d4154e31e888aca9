//! The session hash tables: open addressing with Robin Hood linear probing, so the slot a key
//! starts from is known from its hash alone and can be prefetched before the lookup (a std
//! `HashMap` hides its bucket addresses).
//!
//! Layout: a power-of-two array of slots, each holding the key, the value and one byte, the
//! slot's distance from the key's home slot plus one (0 = empty). Entries are inline, so a
//! lookup whose home slot was prefetched finds key and value in the lines already on their way.
//! Robin Hood insertion (an entry displaced further than the resident takes its slot) keeps
//! probe sequences short and lets a lookup stop at the first slot whose entry is closer to its
//! home than the sought key would be. Deletion shifts the following entries of the cluster one
//! slot back, so there are no tombstones. The table doubles when it would pass 7/8 full, so it
//! is between 7/16 and 7/8 full once grown, like std's.
//!
//! The table holds no hasher: the caller keys one per table (`session::ShardIndex`) and hands
//! the hash in, so the same hash serves the prefetch and the lookup.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots of a table's first allocation.
const MIN_SLOTS: usize = 16;

/// One slot. `dist` is 0 when the slot is empty; otherwise key and value are initialised and
/// the entry sits `dist - 1` slots after its home slot.
#[repr(C)]
pub(super) struct Slot<K, V> {
    key: MaybeUninit<K>,
    value: MaybeUninit<V>,
    dist: u8,
}

impl<K: Copy, V: Copy> Clone for Slot<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K: Copy, V: Copy> Copy for Slot<K, V> {}

impl<K: Copy, V: Copy> Slot<K, V> {
    fn full(key: K, value: V, dist: u8) -> Slot<K, V> {
        Slot {
            key: MaybeUninit::new(key),
            value: MaybeUninit::new(value),
            dist,
        }
    }

    fn key(&self) -> &K {
        debug_assert!(self.dist != 0);
        // SAFETY: only called on occupied slots (dist != 0), whose key is initialised.
        unsafe { self.key.assume_init_ref() }
    }

    fn value(&self) -> &V {
        debug_assert!(self.dist != 0);
        // SAFETY: as `key`.
        unsafe { self.value.assume_init_ref() }
    }

    fn value_mut(&mut self) -> &mut V {
        debug_assert!(self.dist != 0);
        // SAFETY: as `key`.
        unsafe { self.value.assume_init_mut() }
    }
}

pub(super) struct Table<K, V> {
    slots: Box<[Slot<K, V>]>,
    len: usize,
}

impl<K: Copy + Eq, V: Copy> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            slots: Box::default(),
            len: 0,
        }
    }
}

impl<K: Copy + Eq, V: Copy> Table<K, V> {
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the slot array.
    pub(super) fn memory_bytes(&self) -> usize {
        size_of_val(&*self.slots)
    }

    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// The index of `key`'s slot.
    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        for dist in 1..=u8::MAX {
            let s = &self.slots[i];
            // An empty slot, or an entry closer to its home than `key` would be: Robin Hood
            // would have placed `key` before it.
            if s.dist < dist {
                return None;
            }
            // Only entries with the same home slot can hold `key`.
            if s.dist == dist && s.key() == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
        None
    }

    pub(super) fn get(&self, hash: u64, key: &K) -> Option<&V> {
        self.find(hash, key).map(|i| self.slots[i].value())
    }

    pub(super) fn get_mut(&mut self, hash: u64, key: &K) -> Option<&mut V> {
        self.find(hash, key).map(|i| self.slots[i].value_mut())
    }

    /// Inserts a key the table does not hold (the caller has looked it up); `rehash` gives the
    /// hash of any key, for growing.
    pub(super) fn insert_new(&mut self, hash: u64, key: K, value: V, rehash: impl Fn(&K) -> u64) {
        debug_assert!(self.find(hash, &key).is_none(), "key inserted twice");
        if (self.len + 1) * 8 > self.slots.len() * 7 {
            self.grow(&rehash);
        }
        let mut pending = (hash, key, value);
        // A probe sequence past what `dist` can count: grow, and place what was left over.
        while let Some((key, value)) = self.place(pending.0, pending.1, pending.2) {
            self.grow(&rehash);
            pending = (rehash(&key), key, value);
        }
        self.len += 1;
    }

    /// Places an entry known to be absent; returns the entry left without a slot if a probe
    /// sequence grew too long (all others stay in place).
    fn place(&mut self, hash: u64, key: K, value: V) -> Option<(K, V)> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        let mut carried = Slot::full(key, value, 1);
        loop {
            let s = &mut self.slots[i];
            if s.dist == 0 {
                *s = carried;
                return None;
            }
            if s.dist < carried.dist {
                std::mem::swap(s, &mut carried);
            }
            if carried.dist == u8::MAX {
                return Some((*carried.key(), *carried.value()));
            }
            carried.dist += 1;
            i = (i + 1) & mask;
        }
    }

    /// Doubles the slot array (to `MIN_SLOTS` at first) and places every entry again.
    fn grow(&mut self, rehash: &impl Fn(&K) -> u64) {
        let mut slots = self.slots.len().max(MIN_SLOTS / 2) * 2;
        loop {
            let mut bigger = Table {
                slots: empty_slots(slots),
                len: 0,
            };
            let placed = self
                .iter()
                .all(|(&key, &value)| bigger.place(rehash(&key), key, value).is_none());
            if placed {
                self.slots = bigger.slots;
                return;
            }
            // A probe sequence of 255 slots: only full 64-bit collisions of the keyed hash keep
            // it there as the table doubles.
            slots *= 2;
        }
    }

    pub(super) fn remove(&mut self, hash: u64, key: &K) -> Option<V> {
        let mut i = self.find(hash, key)?;
        let value = *self.slots[i].value();
        let mask = self.mask();
        // Backward shift: the rest of the cluster moves one slot closer to home.
        loop {
            let next = (i + 1) & mask;
            if self.slots[next].dist <= 1 {
                self.slots[i].dist = 0;
                break;
            }
            self.slots[i] = self.slots[next];
            self.slots[i].dist -= 1;
            i = next;
        }
        self.len -= 1;
        Some(value)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots
            .iter()
            .filter(|s| s.dist != 0)
            .map(|s| (s.key(), s.value()))
    }
}

fn empty_slots<K: Copy, V: Copy>(n: usize) -> Box<[Slot<K, V>]> {
    let empty = Slot {
        key: MaybeUninit::uninit(),
        value: MaybeUninit::uninit(),
        dist: 0,
    };
    vec![empty; n].into_boxed_slice()
}

/// Where a table's slots are, for prefetching without its lock: the slot array's address and
/// mask, stored by the lock holder whenever they may change and read by anyone.
///
/// Reading them races with a growth, so a reader may see the old array (freed meanwhile) or an
/// address from one array and the mask of the other. That is harmless because the address is
/// only handed to a prefetch instruction: it is computed with wrapping arithmetic on plain
/// integers (no pointer into the array is made, so nothing is out of bounds), a prefetch never
/// faults on any address, and it reads nothing the program sees. Atomics make the racing
/// reads and writes themselves defined.
pub(super) struct Hint<K, V> {
    base: AtomicUsize,
    mask: AtomicUsize,
    slot: PhantomData<fn() -> Slot<K, V>>,
}

impl<K, V> Default for Hint<K, V> {
    fn default() -> Self {
        Hint {
            base: AtomicUsize::new(0),
            mask: AtomicUsize::new(0),
            slot: PhantomData,
        }
    }
}

impl<K: Copy + Eq, V: Copy> Hint<K, V> {
    /// Called by the lock holder after anything that may have reallocated `table`.
    pub(super) fn publish(&self, table: &Table<K, V>) {
        self.base
            .store(table.slots.as_ptr() as usize, Ordering::Relaxed);
        self.mask.store(table.mask(), Ordering::Relaxed);
    }

    /// Starts loading the home slot of `hash` and the slot after it (where the entry is unless
    /// two others came first): one or two cache lines.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let base = self.base.load(Ordering::Relaxed);
        if base == 0 {
            return;
        }
        let mask = self.mask.load(Ordering::Relaxed);
        let at = base.wrapping_add((hash as usize & mask).wrapping_mul(size_of::<Slot<K, V>>()));
        prefetch_line(at);
        prefetch_line(at.wrapping_add(2 * size_of::<Slot<K, V>>() - 1));
    }
}

/// Asks the CPU to start loading the cache line of `addr` (a no-op where there is no such
/// instruction).
#[inline(always)]
fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint: it never faults, whatever the address, and has no effect
    // the program can observe besides timing (`Hint`).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    type T = Table<u16, u32>;

    /// Every entry sits after its home slot by `dist - 1`, with no empty slot in between, and
    /// entries are where Robin Hood put them: none is more than one slot further from home than
    /// the entry before it.
    fn check(t: &T, hash: impl Fn(&u16) -> u64) {
        let n = t.slots.len();
        let mask = t.mask();
        let mut len = 0;
        for (i, s) in t.slots.iter().enumerate() {
            if s.dist == 0 {
                continue;
            }
            len += 1;
            let home = hash(s.key()) as usize & mask;
            assert_eq!((home + usize::from(s.dist) - 1) & mask, i, "slot {i}");
            if s.dist > 1 {
                let before = &t.slots[(i + n - 1) & mask];
                assert!(before.dist + 1 >= s.dist, "slot {i}: a gap before it");
            }
        }
        assert_eq!(len, t.len());
    }

    fn mix(k: &u16) -> u64 {
        u64::from(*k).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn removal_shifts_entries_back_across_the_end_of_the_array() {
        let mut t = T::default();
        // All four have the last slot of 16 as home: they occupy slots 15, 0, 1, 2.
        let last = |_: &u16| 15u64;
        for k in 1..=4 {
            t.insert_new(15, k, u32::from(k) * 10, last);
        }
        assert_eq!(t.slots.len(), 16);
        assert_eq!(*t.slots[15].key(), 1);
        assert_eq!(*t.slots[2].key(), 4);
        check(&t, last);
        assert_eq!(t.remove(15, &1), Some(10));
        // 2 moved back from slot 0 to slot 15, 3 and 4 one slot each.
        assert_eq!(*t.slots[15].key(), 2);
        assert_eq!(*t.slots[1].key(), 4);
        assert_eq!(t.slots[2].dist, 0);
        check(&t, last);
        for k in 2..=4 {
            assert_eq!(t.get(15, &k), Some(&(u32::from(k) * 10)));
        }
        assert_eq!(t.get(15, &1), None);
        assert_eq!(t.remove(15, &1), None);
        // An entry at its home slot right after the cluster stays where it is.
        t.insert_new(2, 9, 90, |k| if *k == 9 { 2 } else { 15 });
        assert_eq!(t.remove(15, &3), Some(30));
        assert_eq!(*t.slots[2].key(), 9);
        assert_eq!(t.get(2, &9), Some(&90));
    }

    #[test]
    fn grows_by_doubling_past_seven_eighths_and_keeps_every_entry() {
        let mut t = T::default();
        assert_eq!(t.memory_bytes(), 0);
        assert_eq!(t.get(mix(&1), &1), None);
        for k in 0..896 {
            t.insert_new(mix(&k), k, u32::from(k), mix);
        }
        // 896 is 7/8 of 1024.
        assert_eq!(t.slots.len(), 1024);
        t.insert_new(mix(&896), 896, 896, mix);
        assert_eq!(t.slots.len(), 2048);
        assert_eq!(t.memory_bytes(), 2048 * size_of::<Slot<u16, u32>>());
        check(&t, mix);
        for k in 0..=896 {
            assert_eq!(t.get(mix(&k), &k), Some(&u32::from(k)));
        }
        if let Some(v) = t.get_mut(mix(&7), &7) {
            *v = 70;
        }
        assert_eq!((t.len(), t.get(mix(&7), &7)), (897, Some(&70)));
    }

    #[test]
    fn a_probe_sequence_too_long_to_count_grows_the_table() {
        // 300 keys whose hashes differ only above bit 10 share one home slot until the table
        // has 2048 slots: past 255 slots of probing, it grows (twice) instead.
        let high = |k: &u16| u64::from(*k) << 10;
        let mut t = T::default();
        for k in 0..300 {
            t.insert_new(high(&k), k, u32::from(k), high);
        }
        assert_eq!(t.slots.len(), 2048);
        check(&t, high);
        for k in 0..300 {
            assert_eq!(t.get(high(&k), &k), Some(&u32::from(k)));
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Get(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few keys, so removals and lookups often hit.
        let key = 0u16..400;
        prop_oneof![
            3 => (key.clone(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => key.clone().prop_map(Op::Remove),
            2 => key.prop_map(Op::Get),
        ]
    }

    proptest! {
        /// The table against std's HashMap, with a good hash and with one of 16 values (long
        /// clusters, wrapping around the end of the array, Robin Hood swaps everywhere).
        #[test]
        fn behaves_like_a_hash_map(ops in prop::collection::vec(op(), 1..600), clustered: bool) {
            let hash = |k: &u16| if clustered { mix(k) & 0xf } else { mix(k) };
            let mut t = T::default();
            let mut model = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        match t.get_mut(hash(&k), &k) {
                            Some(old) => *old = v,
                            None => t.insert_new(hash(&k), k, v, hash),
                        }
                        model.insert(k, v);
                    }
                    Op::Remove(k) => prop_assert_eq!(t.remove(hash(&k), &k), model.remove(&k)),
                    Op::Get(k) => prop_assert_eq!(t.get(hash(&k), &k), model.get(&k)),
                }
                prop_assert_eq!(t.len(), model.len());
            }
            check(&t, hash);
            let mut entries: Vec<(u16, u32)> = t.iter().map(|(&k, &v)| (k, v)).collect();
            entries.sort_unstable();
            let mut expected: Vec<(u16, u32)> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(entries, expected);
        }
    }
}
