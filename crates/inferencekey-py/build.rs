//! Lays out the functions ordinary client use runs side by side in the extension.
//!
//! `hot-symbols.txt` (written by `scripts/hot-symbols/generate.py`) lists them; the
//! linker gets it as `--symbol-ordering-file`. Spread over the whole library, those few
//! hundred kilobytes of code made the kernel map most of its five megabytes into every
//! process that makes calls, since it maps code in 64 KiB blocks around each page used;
//! packed together, about 1.5 MiB stays resident.
//!
//! Only some linkers know the option (LLD, which rustup's Rust uses on x86_64 Linux, and
//! mold; not GNU ld or gold, nor Apple's), so it is passed only when linking a tiny
//! program with it, the way this build links, succeeds. `INFERENCEKEY_NO_SYMBOL_ORDER=1`
//! turns it off.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn main() {
    println!("cargo:rerun-if-changed=hot-symbols.txt");
    for var in [
        "INFERENCEKEY_NO_SYMBOL_ORDER",
        "RUSTC_LINKER",
        "CARGO_ENCODED_RUSTFLAGS",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if env::var_os("INFERENCEKEY_NO_SYMBOL_ORDER").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let list = manifest.join("hot-symbols.txt");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    if !list.is_file() {
        return;
    }
    if !linker_takes_symbol_order(&out_dir) {
        println!(
            "cargo:warning=the linker does not take --symbol-ordering-file: hot code not packed"
        );
        return;
    }
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    // Symbols of another build (other dependencies, compiler or profile) are skipped.
    println!("cargo:rustc-cdylib-link-arg=-Wl,--no-warn-symbol-ordering");
}

/// Whether a program built like this crate (same compiler, target, flags and linker)
/// links with `--symbol-ordering-file`.
fn linker_takes_symbol_order(out_dir: &Path) -> bool {
    let Some(rustc) = env::var_os("RUSTC") else {
        return false;
    };
    let source = out_dir.join("link_probe.rs");
    let order = out_dir.join("link_probe_order.txt");
    if fs::write(&source, "fn main() {}\n").is_err() || fs::write(&order, "main\n").is_err() {
        return false;
    }
    let mut probe = Command::new(rustc);
    probe
        .args([
            "--crate-type=bin",
            "--crate-name=link_probe",
            "--edition=2021",
        ])
        .arg("-o")
        .arg(out_dir.join("link_probe"))
        .arg(&source);
    if let Ok(target) = env::var("TARGET") {
        probe.args(["--target", &target]);
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    probe.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        let mut arg = OsString::from("linker=");
        arg.push(linker);
        probe.arg("-C").arg(arg);
    }
    let mut order_arg = OsString::from("link-arg=-Wl,--symbol-ordering-file=");
    order_arg.push(&order);
    probe.arg("-C").arg(order_arg);
    probe
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
