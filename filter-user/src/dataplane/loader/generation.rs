//! Table generations: the state word, staging the tables and policies of the inactive generation, the flip, look-ups in the mapped tables.

use super::*;

impl Filter {
    pub(super) fn array<T: aya::Pod>(
        &self,
        name: &'static str,
    ) -> Result<Array<&MapData, T>, LoadError> {
        let m = self.maps.get(name).ok_or(LoadError::Missing(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    pub(super) fn array_mut<T: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, T>, LoadError> {
        let m = self.maps.get_mut(name).ok_or(LoadError::Missing(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    /// The program's global state.
    pub fn state(&self) -> Result<State, LoadError> {
        self.array::<State>(MAP_STATE)?
            .get(&0, 0)
            .map_err(map_err(MAP_STATE))
    }

    /// Overwrite the global state (generation flip, epoch, seed).
    pub fn set_state(&mut self, s: State) -> Result<(), LoadError> {
        self.array_mut::<State>(MAP_STATE)?
            .set(0, s, 0)
            .map_err(map_err(MAP_STATE))
    }

    /// The policy of category `cat` in the active generation.
    pub fn policy(&self, cat: u8) -> Result<Policy, LoadError> {
        let generation = self.state()?.generation & 1;
        self.array::<Policy>(MAP_POLICY)?
            .get(&(generation * CATEGORY_SLOTS + u32::from(cat)), 0)
            .map_err(map_err(MAP_POLICY))
    }

    /// Map an mmapable map of this instance.
    pub(super) fn mmap(
        &self,
        name: &'static str,
        bytes: usize,
        writable: bool,
    ) -> Result<Mmap, LoadError> {
        let data = map_data(self.maps.get(name).ok_or(LoadError::Missing(name))?)
            .ok_or(LoadError::Missing(name))?;
        Mmap::new(data.fd().as_fd(), bytes, writable)
            .map_err(pinned_err(format!("mapping map {name} into memory")))
    }

    /// The node pool of generation `generation` (`None` before the first
    /// install into it).
    pub(super) fn pool(&self, generation: u32) -> Result<Option<(MapData, u32)>, LoadError> {
        let m = self
            .maps
            .get(MAP_TRIE)
            .ok_or(LoadError::Missing(MAP_TRIE))?;
        let outer: ArrayOfMaps<&MapData, MapData> =
            ArrayOfMaps::try_from(m).map_err(map_err(MAP_TRIE))?;
        match outer.get(&(generation & 1), 0) {
            Ok(inner) => {
                let n = inner.info().map_err(map_err(MAP_TRIE))?.max_entries();
                Ok(Some((inner, n)))
            }
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(MAP_TRIE)(e)),
        }
    }

    /// The node pool of each generation that has one, as (generation, map).
    pub fn pool_maps(&self) -> Result<Vec<(u32, MapData)>, LoadError> {
        let mut out = Vec::new();
        for g in 0..2 {
            if let Some((m, _)) = self.pool(g)? {
                out.push((g, m));
            }
        }
        Ok(out)
    }

    /// The category of `addr` in the active generation, read from the maps
    /// with the program's own walk (`check` shows it beside the lists' answer).
    pub fn lookup(&self, addr: std::net::IpAddr) -> Result<u8, LoadError> {
        let generation = self.state()?.generation & 1;
        let root = self.mmap(MAP_ROOT, ROOT_ENTRIES as usize * 4, false)?;
        let pool = match self.pool(generation)? {
            Some((inner, n)) => Some((
                Mmap::new(inner.fd().as_fd(), n as usize * 64, false)
                    .map_err(pinned_err("mapping the node pool into memory"))?,
                n,
            )),
            None => None,
        };
        let mem = MappedTables {
            root: root.slice::<Entry>(ROOT_ENTRIES as usize),
            units: pool
                .as_ref()
                .map_or(&[], |(m, n)| m.slice::<Unit>(*n as usize)),
        };
        let (bytes, v6) = match addr {
            std::net::IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), false),
            std::net::IpAddr::V6(a) => (a.octets(), true),
        };
        Ok(filter_common::trie::lookup(&mem, generation, &bytes, v6))
    }

    /// Fill the inactive generation with `tables` and `policies` (by
    /// category id; categories not named get [`DEFAULT_POLICY`]). Nothing is
    /// in force until [`Filter::flip`], which switches to it with one write:
    /// a packet sees the old tables or the new ones, never a mix. A writer
    /// records the change (the state file) in between, so a change that
    /// cannot be recorded never goes live. On pinned maps the caller holds
    /// the writer lock (`control::lock::WriterLock`).
    pub fn stage_tables(
        &mut self,
        tables: &Tables,
        policies: &BTreeMap<u8, Policy>,
    ) -> Result<StagedGeneration, LoadError> {
        let next = (self.state()?.generation & 1) ^ 1;
        // The node pool: a new map of exactly the size needed.
        let n = u32::try_from(tables.units.len().max(1)).map_err(|_| TableError::TooManyUnits {
            max: filter_common::MAX_POOL_UNITS,
        })?;
        let pool: Array<MapData, Unit> =
            Array::create(n, BPF_F_MMAPABLE | BPF_F_INNER_MAP).map_err(map_err(MAP_TRIE))?;
        {
            let mut m = Mmap::new(pool.map().fd().as_fd(), n as usize * 64, true)
                .map_err(pinned_err("mapping a new node pool into memory"))?;
            m.slice_mut::<Unit>(tables.units.len())
                .copy_from_slice(&tables.units);
        }
        // The inactive generation's root blocks.
        {
            let mut root = self.mmap(MAP_ROOT, ROOT_ENTRIES as usize * 4, true)?;
            let r = root.slice_mut::<Entry>(ROOT_ENTRIES as usize);
            let v4 = root_index(next, false, 0) as usize;
            let v6 = root_index(next, true, 0) as usize;
            r[v4..v4 + ROOT_LEN as usize].copy_from_slice(&tables.root4);
            r[v6..v6 + ROOT_LEN as usize].copy_from_slice(&tables.root6);
        }
        {
            let m = self
                .maps
                .get_mut(MAP_TRIE)
                .ok_or(LoadError::Missing(MAP_TRIE))?;
            let mut outer: ArrayOfMaps<&mut MapData, Array<MapData, Unit>> =
                ArrayOfMaps::try_from(m).map_err(map_err(MAP_TRIE))?;
            outer.set(next, &pool, 0).map_err(map_err(MAP_TRIE))?;
        }
        // Policies of the new generation.
        {
            let mut pol = self.array_mut::<Policy>(MAP_POLICY)?;
            for cat in 0..CATEGORY_SLOTS {
                let p = policies
                    .get(&(cat as u8))
                    .copied()
                    .unwrap_or(DEFAULT_POLICY);
                pol.set(next * CATEGORY_SLOTS + cat, p, 0)
                    .map_err(map_err(MAP_POLICY))?;
            }
        }
        // Subscribers of the new generation; their `STATE` bits are written
        // with the flip.
        let mut sub_state = self.state()?;
        self.write_subscribers(&mut sub_state, next)?;
        Ok(StagedGeneration {
            sub_flags: sub_state.flags & (STATE_SUB_IFACE | STATE_SUB_PREFIX),
            sub_v4_len: sub_state.sub_v4_len,
            sub_v6_len: sub_state.sub_v6_len,
            info: GenerationInfo {
                generation: next,
                v4_prefixes: tables.v4_prefixes,
                v6_prefixes: tables.v6_prefixes,
                units: tables.units.len(),
                table_bytes: tables.memory_bytes(),
            },
            stateless: tables.units.len() <= filter_common::STATELESS_MAX_UNITS,
        })
    }

    /// Put a staged generation in force with one write of `STATE` (read
    /// again here: only the generation, its version, the stateless flag and
    /// the subscriber bits change). Call it right after [`Filter::stage_tables`], under the same lock.
    #[allow(
        clippy::needless_pass_by_value,
        reason = "taken so that one staging is flipped once"
    )]
    pub fn flip(&mut self, staged: StagedGeneration) -> Result<GenerationInfo, LoadError> {
        let mut state = self.state()?;
        state.generation = staged.info.generation;
        state.flags = (state.flags & !(STATE_SUB_IFACE | STATE_SUB_PREFIX)) | staged.sub_flags;
        state.sub_v4_len = staged.sub_v4_len;
        state.sub_v6_len = staged.sub_v6_len;
        state.version = state.version.wrapping_add(1);
        if staged.stateless {
            state.flags |= filter_common::STATE_STATELESS;
        } else {
            state.flags &= !filter_common::STATE_STATELESS;
        }
        self.set_state(state)?;
        Ok(staged.info)
    }
}
