//! Building plugin crates into WebAssembly components; shared by this
//! crate's build script and by `cargo xtask plugins`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target plugins are built for; it emits components directly.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Adds the wasm target through rustup when it is missing.
pub fn ensure_target(cargo: &Path) -> Result<(), String> {
    let sysroot = Command::new(rustc_next_to(cargo))
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    let libdir = Path::new(&sysroot).join("lib/rustlib").join(WASM_TARGET);
    if libdir.exists() {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| format!("cannot run rustup to add {WASM_TARGET}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup target add {WASM_TARGET} failed"))
    }
}

fn rustc_next_to(cargo: &Path) -> PathBuf {
    let rustc = cargo.with_file_name("rustc");
    if rustc.exists() {
        rustc
    } else {
        PathBuf::from("rustc")
    }
}

/// Removes from `cmd`'s environment what cargo set for the program that
/// runs it (a build script, or `cargo run` of xtask): a nested cargo
/// compares build scripts' `rerun-if-env-changed` variables (ring's read
/// `CARGO_PKG_NAME`) with its own environment, so they would make its
/// dependencies stale against a build from a shell.
pub fn clean_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || matches!(
                key,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_MAKEFLAGS"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
                    | "NUM_JOBS"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "RUSTC_LINKER"
            )
        {
            cmd.env_remove(key);
        }
    }
}

/// Builds `packages` of the workspace at `root` with the `wasm` profile into
/// `<target>/wasm` (`<target>`: `CARGO_TARGET_DIR` when set, so that CI's
/// cached target folder keeps the plugins' dependencies built; otherwise
/// `<root>/target`) and returns `(package, path to its .wasm)`.
pub fn build(
    cargo: &Path,
    root: &Path,
    packages: &[&str],
) -> Result<Vec<(String, PathBuf)>, String> {
    ensure_target(cargo)?;
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm");
    let mut cmd = Command::new(cargo);
    clean_cargo_env(&mut cmd);
    cmd.current_dir(root)
        .args([
            "build",
            "--quiet",
            "--profile",
            "wasm",
            "--target",
            WASM_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the outer (native) build must not leak into this one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    for p in packages {
        cmd.args(["--package", p]);
    }
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {packages:?} for {WASM_TARGET} failed"));
    }
    let out = target_dir.join(WASM_TARGET).join("wasm");
    Ok(packages
        .iter()
        .map(|p| {
            (
                p.to_string(),
                out.join(format!("{}.wasm", p.replace('-', "_"))),
            )
        })
        .collect())
}
