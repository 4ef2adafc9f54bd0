//! Subscribers, inside interfaces, the flow-key seed and the wall clock, written into the maps.

use super::*;

impl Filter {
    /// Set who the subscribers are; written with the next install (the
    /// generation flip makes the change atomic with the tables). Refused
    /// when there are more prefixes than `SUBSCRIBER_CAPACITY`.
    pub fn set_subscribers(&mut self, subscribers: Subscribers) -> Result<(), LoadError> {
        let max = filter_common::SUBSCRIBER_CAPACITY as usize;
        if subscribers.prefixes.len() > max {
            return Err(LoadError::Input(format!(
                "{} subscriber prefixes; the limit is {max}",
                subscribers.prefixes.len()
            )));
        }
        self.subscribers = Some(subscribers);
        Ok(())
    }

    /// The active generation's subscriber prefixes.
    pub fn subscriber_prefixes(&self) -> Result<Vec<Cidr>, LoadError> {
        let generation = self.state()?.generation & 1;
        let m = self
            .maps
            .get(MAP_SUBSCRIBERS)
            .ok_or(LoadError::Missing(MAP_SUBSCRIBERS))?;
        let trie: LpmTrie<&MapData, SubscriberKey, u32> =
            LpmTrie::try_from(m).map_err(map_err(MAP_SUBSCRIBERS))?;
        let mut out = Vec::new();
        for k in trie.keys() {
            let k = k.map_err(map_err(MAP_SUBSCRIBERS))?;
            let (bits, data) = (k.prefix_len(), k.data());
            if u32::from(data[3]) != generation || bits < 32 {
                continue;
            }
            let bits = bits - 32;
            let mut a = [0u8; 16];
            a.copy_from_slice(&data[4..]);
            let v6 = std::net::Ipv6Addr::from(a);
            out.push(match v6.to_ipv4_mapped() {
                Some(v4) if bits >= 96 => Cidr::V4 {
                    addr: v4,
                    len: (bits - 96) as u8,
                },
                _ => Cidr::V6 {
                    addr: v6,
                    len: bits as u8,
                },
            });
        }
        out.sort();
        Ok(out)
    }

    /// Fill generation `next` of `SUBSCRIBERS` (what [`Filter::set_subscribers`]
    /// gave, else a copy of the active generation's) and set the subscriber
    /// bits of `state` (written by the caller with the flip).
    pub(super) fn write_subscribers(
        &mut self,
        state: &mut State,
        next: u32,
    ) -> Result<(), LoadError> {
        let current = state.generation & 1;
        let m = self
            .maps
            .get_mut(MAP_SUBSCRIBERS)
            .ok_or(LoadError::Missing(MAP_SUBSCRIBERS))?;
        let mut trie: LpmTrie<&mut MapData, SubscriberKey, u32> =
            LpmTrie::try_from(m).map_err(map_err(MAP_SUBSCRIBERS))?;
        let mut keep = Vec::new();
        let mut stale = Vec::new();
        for k in trie.keys() {
            let k = k.map_err(map_err(MAP_SUBSCRIBERS))?;
            if u32::from(k.data()[3]) == next {
                stale.push(k);
            } else if u32::from(k.data()[3]) == current {
                keep.push(k);
            }
        }
        for k in &stale {
            trie.remove(k).map_err(map_err(MAP_SUBSCRIBERS))?;
        }
        match &self.subscribers {
            Some(sub) => {
                for c in &sub.prefixes {
                    let (bits, data) = subscriber_entry(next, c);
                    trie.insert(&LpmKey::new(bits, data), 1, 0)
                        .map_err(map_err(MAP_SUBSCRIBERS))?;
                }
                state.flags &= !(STATE_SUB_IFACE | STATE_SUB_PREFIX);
                state.flags |= if sub.by_interface {
                    STATE_SUB_IFACE
                } else {
                    STATE_SUB_PREFIX
                };
                state.sub_v4_len = sub.v4_len.min(32);
                state.sub_v6_len = sub.v6_len.min(128);
            }
            None => {
                for k in keep {
                    let mut data = k.data();
                    data[3] = next as u8;
                    trie.insert(&LpmKey::new(k.prefix_len(), data), 1, 0)
                        .map_err(map_err(MAP_SUBSCRIBERS))?;
                }
            }
        }
        Ok(())
    }

    /// Mark `ifindex` as facing subscribers (or not), keeping its counter
    /// slot (see [`Subscribers::by_interface`]).
    pub fn set_interface_inside(&mut self, ifindex: u32, inside: bool) -> Result<(), LoadError> {
        if ifindex >= IF_INDEX_LIMIT {
            return Err(LoadError::Input(format!(
                "ifindex {ifindex}: interfaces facing subscribers need an ifindex below {IF_INDEX_LIMIT}"
            )));
        }
        let mut m = self.array_mut::<u32>(MAP_IF_SLOT)?;
        let v = m.get(&ifindex, 0).map_err(map_err(MAP_IF_SLOT))?;
        let v = if inside {
            v | IF_INSIDE
        } else {
            v & !IF_INSIDE
        };
        m.set(ifindex, v, 0).map_err(map_err(MAP_IF_SLOT))
    }

    /// Use `seed` for `flows=P%`, drawn again every `epoch_secs` of wall-clock
    /// time (0: never): gateways with the same seed pick the same
    /// subscribers.
    pub fn set_seed(&mut self, seed: u64, epoch_secs: u32) -> Result<(), LoadError> {
        let mut state = self.state()?;
        state.seed = seed;
        state.epoch_secs = epoch_secs;
        self.set_state(state)
    }

    /// Tell the program the wall-clock time (`unix_ns`, ns since 1970; the
    /// system clock when `None`) for the `flows=P%` epoch. The daemon calls
    /// this periodically, so clock steps are followed.
    pub fn set_wall_clock(&mut self, unix_ns: Option<u64>) -> Result<(), LoadError> {
        let mut state = self.state()?;
        state.wall_offset_ns = wall_offset_ns(unix_ns);
        self.set_state(state)
    }

    /// Forget the "has a category" bits of flows not seen for a rotation
    /// period (the daemon calls this every `FLOW_BITS_ROTATE_NS`).
    pub fn rotate_flow_bits(&mut self) -> Result<(), LoadError> {
        let mut state = self.state()?;
        let next = (state.flow_bits_half & 1) ^ 1;
        {
            let words = filter_common::FLOW_BITS_WORDS as usize;
            let mut bits = self.mmap(filter_common::MAP_FLOW_BITS, 2 * words * 8, true)?;
            let w = bits.slice_mut::<u64>(2 * words);
            let at = next as usize * words;
            w[at..at + words].fill(0);
        }
        state.flow_bits_half = next;
        self.set_state(state)
    }

    /// Forget endpoint and tag bits older than a rotation period: clear the
    /// half learning did not use and make it the one learning uses (the
    /// daemon calls this every `BITS_ROTATE_NS`).
    pub fn rotate_bits(&mut self) -> Result<(), LoadError> {
        let mut state = self.state()?;
        let next = (state.bits_half & 1) ^ 1;
        {
            let mut bits = self.mmap(MAP_BITS, BITS_WORDS as usize * 8, true)?;
            let w = bits.slice_mut::<u64>(BITS_WORDS as usize);
            let at = (next * ENDPOINT_BITS_WORDS) as usize;
            w[at..at + ENDPOINT_BITS_WORDS as usize].fill(0);
        }
        state.bits_half = next;
        self.set_state(state)
    }
}
