//! Lays out the functions ordinary client use runs side by side in the extension.
//!
//! `hot-symbols.txt` (written by `scripts/hot-symbols/generate.py`) lists them; the
//! linker gets it as `--symbol-ordering-file`. Spread over the whole library, those few
//! hundred kilobytes of code made the kernel map most of its five megabytes into every
//! process that makes calls, since it maps code in 64 KiB blocks around each page used;
//! packed together, about 1.4 MiB stays resident.
//!
//! Only LLD and mold know the option, so it is passed only where rustc links with its
//! own LLD by default (x86_64 Linux from Rust 1.90) and nothing in the environment
//! chooses another linker. `INFERENCEKEY_NO_SYMBOL_ORDER=1` turns it off.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    println!("cargo:rerun-if-env-changed=INFERENCEKEY_NO_SYMBOL_ORDER");
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let list = manifest.join("hot-symbols.txt");
    if env::var_os("INFERENCEKEY_NO_SYMBOL_ORDER").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    if !list.is_file() || !links_with_rust_lld() {
        return;
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    // Symbols of another build (other dependencies, compiler or profile) are skipped.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
}

/// Whether rustc links this build with its bundled LLD: the default on
/// x86_64-unknown-linux-gnu since Rust 1.90, unless flags or a linker setting override it.
fn links_with_rust_lld() -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let overrides = [
        "linker",
        "link-self-contained",
        "linker-flavor",
        "linker-features",
        "fuse-ld",
    ];
    if overrides.iter().any(|o| flags.contains(o)) {
        return false;
    }
    let linker_vars = [
        "RUSTC_LINKER",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
    ];
    if linker_vars.iter().any(|v| env::var_os(v).is_some()) {
        return false;
    }
    rustc_minor().is_some_and(|minor| minor >= 90)
}

fn rustc_minor() -> Option<u32> {
    let rustc = env::var_os("RUSTC")?;
    let out = Command::new(rustc).arg("--version").output().ok()?;
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
