use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let ebpf_package = packages
        .into_iter()
        .find(|cargo_metadata::Package { name, .. }| name.as_str() == "filter-ebpf")
        .ok_or_else(|| anyhow!("filter-ebpf package not found"))?;
    let cargo_metadata::Package {
        name,
        manifest_path,
        ..
    } = ebpf_package;
    let ebpf_package = aya_build::Package {
        name: name.as_str(),
        root_dir: manifest_path
            .parent()
            .ok_or_else(|| anyhow!("no parent for {manifest_path}"))?
            .as_str(),
        ..Default::default()
    };
    // `nightly`, or the dated nightly `cargo xtask setup` installs when a machine has none.
    let toolchain = ["nightly", "nightly-2026-05-19"]
        .into_iter()
        .find(|t| {
            std::process::Command::new("rustup")
                .args(["run", t, "rustc", "--version"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map_or(Toolchain::Nightly, Toolchain::Custom);
    aya_build::build_ebpf([ebpf_package], toolchain)?;
    // With AYA_BUILD_SKIP=1 (host-only work) aya-build builds nothing; leave an
    // empty object so the crate still compiles. Loading it fails with a clear error.
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    let object = out_dir.join("flowfilter");
    if !object.exists() {
        std::fs::write(&object, b"").context("write placeholder eBPF object")?;
    }
    Ok(())
}
