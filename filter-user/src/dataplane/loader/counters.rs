//! Counters, events, traces and interface slots, read from the per-CPU maps.

use super::*;

impl Filter {
    /// The last packet's decision (loaded with `trace`).
    pub fn trace(&self) -> Result<PktTrace, LoadError> {
        self.array::<PktTrace>(MAP_PKT_TRACE)?
            .get(&0, 0)
            .map_err(map_err(MAP_PKT_TRACE))
    }

    /// Clear the trace record.
    pub fn clear_trace(&mut self) -> Result<(), LoadError> {
        self.array_mut::<PktTrace>(MAP_PKT_TRACE)?
            .set(0, PktTrace::default(), 0)
            .map_err(map_err(MAP_PKT_TRACE))
    }

    /// Every slot of a per-CPU array, summed over CPUs.
    pub(super) fn per_cpu_sums<T: aya::Pod + Default>(
        &self,
        name: &'static str,
        entries: u32,
        add: impl Fn(&T, &T) -> T,
    ) -> Result<Vec<T>, LoadError> {
        let data = map_data(self.maps.get(name).ok_or(LoadError::Missing(name))?)
            .ok_or(LoadError::Missing(name))?;
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(pinned_err("counting the possible CPUs"))?;
        let all = per_cpu_all::<T>(data.fd().as_fd(), entries, ncpu)
            .map_err(pinned_err(format!("reading map {name}")))?;
        Ok(all
            .iter()
            .map(|cpus| cpus.iter().fold(T::default(), |a, v| add(&a, v)))
            .collect())
    }

    /// `COUNTERS`, summed over CPUs.
    pub fn counters(&self) -> Result<Vec<Counter>, LoadError> {
        self.per_cpu_sums::<Counter>(MAP_COUNTERS, COUNTER_SLOTS, |a, b| Counter {
            packets: a.packets + b.packets,
            bytes: a.bytes + b.bytes,
        })
    }

    /// `EVENTS`, summed over CPUs.
    pub fn events(&self) -> Result<Vec<u64>, LoadError> {
        self.per_cpu_sums::<u64>(MAP_EVENTS, EVENT_SLOTS, |a, b| a + b)
    }

    /// Per-category counters summed over CPUs and interfaces, indexed by
    /// category id.
    pub fn category_stats(&self) -> Result<Vec<CatStats>, LoadError> {
        let c = self.counters()?;
        Ok((0..CATEGORY_SLOTS)
            .map(|cat| {
                (0..IF_SLOTS).fold(CatStats::default(), |a, s| {
                    sum_cat(&a, &cat_stats(&c, s, cat as u8))
                })
            })
            .collect())
    }

    /// One interface slot's per-category counters summed over CPUs, indexed
    /// by category id (slot 0: interfaces without a slot of their own).
    pub fn slot_stats(&self, slot: u32) -> Result<Vec<CatStats>, LoadError> {
        Ok(slot_cat_stats(&self.counters()?, slot))
    }

    /// Every counter of the program, each per-CPU map read once (one
    /// `BPF_MAP_LOOKUP_BATCH` each): what a report of all interface slots,
    /// labels and global totals needs, without reading `COUNTERS` per slot.
    pub fn counter_snapshot(&self) -> Result<CounterSnapshot, LoadError> {
        Ok(CounterSnapshot {
            counters: self.counters()?,
            events: self.events()?,
            labels: self.label_stats()?,
        })
    }

    /// The counter slot of every registered ifindex, as (ifindex, slot).
    pub fn interface_slots(&self) -> Result<Vec<(u32, u32)>, LoadError> {
        let m = self.array::<u32>(MAP_IF_SLOT)?;
        let mut out = Vec::new();
        for i in 0..IF_INDEX_LIMIT {
            // The slot, without the `IF_INSIDE` bit.
            let s = m.get(&i, 0).map_err(map_err(MAP_IF_SLOT))? & (IF_SLOTS - 1);
            if s != 0 {
                out.push((i, s));
            }
        }
        Ok(out)
    }

    /// Give `ifindex` a counter slot of its own, keeping the one it has.
    /// A new slot starts from zeroed counters. `None` when the ifindex is
    /// beyond `IF_INDEX_LIMIT` or every slot is taken (the interface then
    /// counts in slot 0).
    pub fn register_interface(&mut self, ifindex: u32) -> Result<Option<u32>, LoadError> {
        if ifindex >= IF_INDEX_LIMIT {
            return Ok(None);
        }
        let slots = self.interface_slots()?;
        if let Some((_, s)) = slots.iter().find(|(i, _)| *i == ifindex) {
            return Ok(Some(*s));
        }
        let Some(slot) = (1..IF_SLOTS).find(|s| slots.iter().all(|(_, t)| t != s)) else {
            return Ok(None);
        };
        self.zero_cat_stats((0..CATEGORY_SLOTS).map(|c| (slot, c as u8)))?;
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        let inside = m.get(&ifindex, 0).map_err(map_err(MAP_IF_SLOT))? & IF_INSIDE;
        m.set(ifindex, slot | inside, 0)
            .map_err(map_err(MAP_IF_SLOT))?;
        Ok(Some(slot))
    }

    /// The counter slot for `ifindex`, taking over the slot of `old` (the
    /// index the same interface name had before it was re-created) so its
    /// counters go on; else [`Filter::register_interface`].
    pub fn reassign_interface(
        &mut self,
        old: Option<u32>,
        ifindex: u32,
    ) -> Result<Option<u32>, LoadError> {
        if let Some(old) = old.filter(|&o| o != ifindex)
            && ifindex < IF_INDEX_LIMIT
        {
            let slots = self.interface_slots()?;
            if let Some(&(_, slot)) = slots.iter().find(|(i, _)| *i == old)
                && !slots.iter().any(|(i, _)| *i == ifindex)
            {
                let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
                m.set(ifindex, slot, 0).map_err(map_err(MAP_IF_SLOT))?;
                m.set(old, 0, 0).map_err(map_err(MAP_IF_SLOT))?;
                return Ok(Some(slot));
            }
        }
        self.register_interface(ifindex)
    }

    /// Zero the counters of categories `ids` on every interface slot.
    pub fn reset_category_counters(&mut self, ids: &[u8]) -> Result<(), LoadError> {
        self.zero_cat_stats((0..IF_SLOTS).flat_map(|s| ids.iter().map(move |id| (s, *id))))
    }

    /// Zero the verdict slots of these (interface slot, category) pairs on
    /// every CPU.
    pub(super) fn zero_cat_stats(
        &mut self,
        entries: impl Iterator<Item = (u32, u8)>,
    ) -> Result<(), LoadError> {
        let ncpu = aya::util::nr_cpus()
            .map_err(|(_, e)| e)
            .map_err(pinned_err("counting the possible CPUs"))?;
        let m = self
            .maps
            .get_mut(MAP_COUNTERS)
            .ok_or(LoadError::Missing(MAP_COUNTERS))?;
        let mut m = PerCpuArray::<_, Counter>::try_from(m).map_err(map_err(MAP_COUNTERS))?;
        for (slot, cat) in entries {
            for v in [V_DROP, V_MONITOR, V_PASS] {
                let zero = aya::maps::PerCpuValues::try_from(vec![Counter::default(); ncpu])
                    .map_err(pinned_err("per-CPU zero values"))?;
                m.set(verdict_slot(slot, cat, v), zero, 0)
                    .map_err(map_err(MAP_COUNTERS))?;
            }
        }
        Ok(())
    }

    /// Release the slots of every ifindex not in `keep` (interfaces no
    /// longer attached). Their counters stay until the slot is reused.
    pub fn release_interfaces(&mut self, keep: &[u32]) -> Result<(), LoadError> {
        let slots = self.interface_slots()?;
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        for (i, _) in slots {
            if !keep.contains(&i) {
                m.set(i, 0, 0).map_err(map_err(MAP_IF_SLOT))?;
            }
        }
        Ok(())
    }

    /// Per-label counters summed over CPUs, indexed by label id.
    pub fn label_stats(&self) -> Result<Vec<LabelStats>, LoadError> {
        self.per_cpu_sums::<LabelStats>(MAP_LABEL_STATS, LABEL_SLOTS, |a, s| LabelStats {
            packets: a.packets + s.packets,
            bytes: a.bytes + s.bytes,
            dropped: a.dropped + s.dropped,
            monitored: a.monitored + s.monitored,
        })
    }

    /// Global counters summed over CPUs, indexed by `G_*`: totals of the
    /// per-packet counter slots and the event counts.
    pub fn global_stats(&self) -> Result<Vec<u64>, LoadError> {
        Ok(global_totals(&self.counters()?, &self.events()?))
    }
}
