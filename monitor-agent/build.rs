//! Builds the eBPF object with the nightly toolchain (via aya-build) and embeds it.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../monitor-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "monitor-ebpf",
            root_dir: "../monitor-ebpf",
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
}
