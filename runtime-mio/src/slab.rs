//! A slab of connections addressed by index, with a generation per slot so that a reused
//! slot is never mistaken for the connection that held it before.

pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    len: usize,
}

struct Slot<T> {
    generation: u64,
    value: Option<T>,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// The index and generation the next `insert` will use.
    pub fn vacant(&self) -> (usize, u64) {
        match self.free.last() {
            Some(&index) => (index, self.slots[index].generation),
            None => (self.slots.len(), 0),
        }
    }

    /// Stores `value` at the slot `vacant` announced.
    pub fn insert(&mut self, value: T) -> (usize, u64) {
        self.len += 1;
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index];
                slot.value = Some(value);
                (index, slot.generation)
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: Some(value),
                });
                (self.slots.len() - 1, 0)
            }
        }
    }

    /// The value at `index`, whatever its generation.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.slots.get_mut(index)?.value.as_mut()
    }

    /// The value at `index` only if it still has `generation`.
    pub fn get_current(&mut self, index: usize, generation: u64) -> Option<&mut T> {
        let slot = self.slots.get_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// The generation of the value at `index`, if the slot is occupied.
    pub fn generation(&self, index: usize) -> Option<u64> {
        let slot = self.slots.get(index)?;
        slot.value.as_ref().map(|_| slot.generation)
    }

    pub fn remove(&mut self, index: usize) -> Option<T> {
        let slot = self.slots.get_mut(index)?;
        let value = slot.value.take()?;
        slot.generation += 1;
        self.free.push(index);
        self.len -= 1;
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Indices of the occupied slots.
    pub fn indices(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, _)| i)
            .collect()
    }

    /// Removes every value.
    pub fn drain(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for index in self.indices() {
            out.extend(self.remove(index));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_slot_gets_new_generation() {
        let mut slab = Slab::default();
        assert_eq!(slab.vacant(), (0, 0));
        let (a, ga) = slab.insert("a");
        let (b, _) = slab.insert("b");
        assert_eq!(slab.len(), 2);
        assert_eq!(slab.remove(a), Some("a"));
        assert!(slab.remove(a).is_none());
        assert_eq!(slab.vacant(), (a, ga + 1));
        let (c, gc) = slab.insert("c");
        assert_eq!(c, a);
        assert_ne!(gc, ga);
        assert!(slab.get_current(a, ga).is_none());
        assert_eq!(slab.get_current(c, gc).copied(), Some("c"));
        assert_eq!(slab.indices(), vec![a, b]);
        assert_eq!(slab.drain().len(), 2);
        assert!(slab.is_empty());
    }
}
