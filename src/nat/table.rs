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

    /// Inserts or replaces; `rehash` gives the hash of any key, for growing.
    pub(super) fn insert(&mut self, hash: u64, key: K, value: V, rehash: impl Fn(&K) -> u64) {
        if let Some(v) = self.get_mut(hash, &key) {
            *v = value;
            return;
        }
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

    /// Starts loading the home slot of `hash` and the line after it (where the next entries of
    /// its probe sequence are, even when the slot straddles two lines).
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        let base = self.base.load(Ordering::Relaxed);
        if base == 0 {
            return;
        }
        let mask = self.mask.load(Ordering::Relaxed);
        let at = base.wrapping_add((hash as usize & mask).wrapping_mul(size_of::<Slot<K, V>>()));
        prefetch_line(at);
        prefetch_line(at.wrapping_add(64));
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
