//! Lists with their policies into a [`Filter`]: the tables are built from
//! the [`Lists`] here, the policy specs become policy values, and the data
//! plane stages and flips them.

use std::collections::BTreeMap;

use filter_common::Policy;

use crate::control::policy::PolicySpec;
use crate::dataplane::loader::{Filter, GenerationInfo, LoadError, StagedGeneration};
use crate::lists::{Lists, build_tables};

/// The policy values the data plane takes, by category id.
pub fn policy_values(policies: &BTreeMap<u8, PolicySpec>) -> BTreeMap<u8, Policy> {
    policies.iter().map(|(id, spec)| (*id, spec.0)).collect()
}

/// Installing [`Lists`] into a [`Filter`].
pub trait InstallLists {
    /// Fill the inactive generation with `lists` and `policies` (by category
    /// id; unnamed categories get the default `drop`), then flip to it with
    /// one write. A packet sees the old tables or the new ones, never a mix.
    /// Tables that cannot be built (a limit) are refused before anything is
    /// written. On pinned maps the caller holds the writer lock
    /// ([`crate::control::lock::WriterLock`]).
    fn install(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<GenerationInfo, LoadError>;

    /// The first half of [`InstallLists::install`]: build the tables and fill
    /// the inactive generation with them and `policies`. Nothing is in force
    /// until [`Filter::flip`]; a writer records the change (the state file)
    /// in between, so a change that cannot be recorded never goes live.
    fn stage(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<StagedGeneration, LoadError>;
}

impl InstallLists for Filter {
    fn install(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<GenerationInfo, LoadError> {
        let staged = self.stage(lists, policies)?;
        self.flip(staged)
    }

    fn stage(
        &mut self,
        lists: &Lists,
        policies: &BTreeMap<u8, PolicySpec>,
    ) -> Result<StagedGeneration, LoadError> {
        let tables = build_tables(lists)?;
        self.stage_tables(&tables, &policy_values(policies))
    }
}
