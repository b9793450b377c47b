//! `cargo xtask <command>`: project automation.
//!
//! - `plugins`: builds every bundled plugin (`plugins/<name>`) for
//!   wasm32-wasip2 into `target/plugins/<name>.wasm`.
//! - `test`: builds the plugins and runs `cargo test --workspace`.

#[path = "../../tests/artifacts/wasm_build.rs"]
mod wasm_build;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    match args.first().map(String::as_str) {
        Some("plugins") => plugins(&root).map(|_| ()),
        Some("test") => test(&root, &args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <plugins | test [cargo test args]>");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| "cargo".into())
}

/// The bundled plugins: every crate folder under `plugins/`.
fn bundled(root: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(root.join("plugins")).context("reading plugins/")? {
        let entry = entry?;
        if entry.path().join("Cargo.toml").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn plugins(root: &Path) -> Result<Vec<PathBuf>> {
    let names = bundled(root)?;
    let packages: Vec<&str> = names.iter().map(String::as_str).collect();
    let built = wasm_build::build(&cargo(), root, &packages).map_err(anyhow::Error::msg)?;
    let dest = root.join("target").join("plugins");
    std::fs::create_dir_all(&dest)?;
    let mut out = Vec::new();
    for (name, path) in built {
        let to = dest.join(format!("{name}.wasm"));
        // Copy to a hidden name, then rename: a running daemon watching this
        // folder never sees a half-written plugin.
        let tmp = dest.join(format!(".{name}.wasm.tmp"));
        std::fs::copy(&path, &tmp).with_context(|| format!("copying {}", path.display()))?;
        std::fs::rename(&tmp, &to)?;
        println!("built {}", to.display());
        out.push(to);
    }
    Ok(out)
}

fn test(root: &Path, extra: &[String]) -> Result<()> {
    plugins(root)?;
    let status = Command::new(cargo())
        .current_dir(root)
        .args(["test", "--workspace"])
        .args(extra)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        bail!("tests failed");
    }
    Ok(())
}
