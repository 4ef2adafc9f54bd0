use which::which;

/// Building this crate depends on bpf-linker; rebuild when it changes.
fn main() {
    let bpf_linker = which("bpf-linker").expect(
        "bpf-linker not found: run `cargo xtask setup` (cargo install bpf-linker@0.10.0 --locked)",
    );
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
