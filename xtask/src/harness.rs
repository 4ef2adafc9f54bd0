//! `cargo xtask harness up|down|run SCENARIO` and `cargo xtask demo`.

use anyhow::{Result, bail};

/// `cargo xtask harness ...`
pub fn harness(args: &[String]) -> Result<()> {
    bail!("harness {args:?}: not implemented yet")
}

/// `cargo xtask demo`
pub fn demo(args: &[String]) -> Result<()> {
    bail!("demo {args:?}: not implemented yet")
}
