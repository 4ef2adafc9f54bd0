//! `cargo xtask bench [--quick]`: side-by-side benchmark.

use anyhow::{Result, bail};

/// `cargo xtask bench ...`
pub fn bench(args: &[String]) -> Result<()> {
    bail!("bench {args:?}: not implemented yet")
}
