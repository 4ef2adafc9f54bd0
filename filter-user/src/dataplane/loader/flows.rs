//! The flow table: look-ups, listing, forgetting and occupancy.

use super::*;

impl Filter {
    /// The flow table and its keys, mapped read-only, with the hash key.
    pub(super) fn flow_table(&self) -> Result<(Mmap, Mmap, u64), LoadError> {
        let flows = self.mmap(
            MAP_FLOWS,
            FLOW_BUCKETS as usize * std::mem::size_of::<FlowBucket>(),
            false,
        )?;
        let keys = self.mmap(
            MAP_FLOW_KEYS,
            FLOW_SLOTS as usize * std::mem::size_of::<FlowKey>(),
            false,
        )?;
        Ok((flows, keys, self.state()?.hash_key))
    }

    /// One flow's slot, if the flow is tracked with a category.
    pub fn flow(&self, key: &FlowKey) -> Result<Option<FlowSlot>, LoadError> {
        let (flows, _, hash_key) = self.flow_table()?;
        let tag = key_hash(key, hash_key);
        let buckets = flows.slice::<FlowBucket>(FLOW_BUCKETS as usize);
        let now = now_tick();
        Ok([bucket_of(tag), bucket_of2(tag)]
            .into_iter()
            .find_map(|i| {
                let b = &buckets[i as usize];
                find(b, tag).map(|w| b.slots[w])
            })
            .filter(|s| live(s, now) && s.category != 0))
    }

    /// Every tracked flow with a category (flows the table only caches, of
    /// no category, are left out), with its key.
    pub fn flows(&self) -> Result<Vec<(FlowKey, FlowSlot)>, LoadError> {
        let mut out = Vec::new();
        self.each_flow(|k, s| out.push((*k, *s)))?;
        Ok(out)
    }

    /// Call `f` with each tracked flow with a category, read from the
    /// memory-mapped table (no syscall per slot).
    pub(super) fn each_flow(
        &self,
        mut f: impl FnMut(&FlowKey, &FlowSlot),
    ) -> Result<(), LoadError> {
        let (flows, keys, hash_key) = self.flow_table()?;
        let buckets = flows.slice::<FlowBucket>(FLOW_BUCKETS as usize);
        let keys = keys.slice::<FlowKey>(FLOW_SLOTS as usize);
        let now = now_tick();
        for (i, b) in buckets.iter().enumerate() {
            for (w, s) in b.slots.iter().enumerate() {
                if s.category == 0 || !live(s, now) {
                    continue;
                }
                // A copy, then a check that the key belongs to the slot
                // (both may be written while we read).
                let s = *s;
                let k = keys[i * 2 + w];
                if key_hash(&k, hash_key) == s.tag {
                    f(&k, &s);
                }
            }
        }
        Ok(())
    }

    /// Empty the flow table and the fragment state (tests: forget what
    /// packets taught).
    pub fn forget_flows(&mut self) -> Result<(), LoadError> {
        let mut flows = self.mmap(
            MAP_FLOWS,
            FLOW_BUCKETS as usize * std::mem::size_of::<FlowBucket>(),
            true,
        )?;
        flows
            .slice_mut::<FlowBucket>(FLOW_BUCKETS as usize)
            .fill(FlowBucket::default());
        let n = filter_common::FRAG_CAPACITY as usize;
        let mut frags = self.mmap(
            filter_common::MAP_FRAGS,
            n * std::mem::size_of::<filter_common::FragSlot>(),
            true,
        )?;
        frags
            .slice_mut::<filter_common::FragSlot>(n)
            .fill(filter_common::FragSlot::default());
        Ok(())
    }

    /// Tracked flows with a category, and the flow table's capacity
    /// (counted in place: nothing is collected).
    pub fn flow_occupancy(&self) -> Result<(u64, u32), LoadError> {
        let mut n = 0u64;
        self.each_flow(|_, _| n += 1)?;
        Ok((n, FLOW_SLOTS))
    }
}
