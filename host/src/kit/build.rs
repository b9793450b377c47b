//! `eventsift plugin build`: a project into a checked component.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target plugins are built for; it emits components directly.
pub const WASM_TARGET: &str = "wasm32-wasip2";

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(
        "{0} holds no plugin project: expected a Cargo.toml (Rust) or a package.json (TypeScript)"
    )]
    NotAProject(PathBuf),
    #[error("{0}")]
    Tool(String),
    #[error("the build failed (its output is above)")]
    Failed,
    #[error("the build produced no component: {0} is missing")]
    Missing(PathBuf),
}

/// The language of the project in `dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    /// TypeScript through esbuild and componentize-js (npm).
    Ts,
}

pub fn lang_of(dir: &Path) -> Result<Lang, BuildError> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Lang::Ts)
    } else {
        Err(BuildError::NotAProject(dir.to_path_buf()))
    }
}

/// Adds the wasm target through rustup when the toolchain lacks it.
fn ensure_target() -> Result<(), BuildError> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| BuildError::Tool(format!("cannot run rustc (is Rust installed?): {e}")))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("adding the Rust target {WASM_TARGET} (rustup target add {WASM_TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .map_err(|e| BuildError::Tool(format!("cannot run rustup: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Tool(format!(
            "rustup target add {WASM_TARGET} failed"
        )))
    }
}

/// The package name in a Cargo manifest (`[package] name = "..."`).
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

/// The `name` of a package.json (the first `"name": "..."`: the project's own).
fn npm_name(manifest: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(manifest).ok()?;
    value.get("name")?.as_str().map(str::to_owned)
}

fn npm(dir: &Path, args: &[&str]) -> Result<(), BuildError> {
    let status = Command::new("npm")
        .current_dir(dir)
        .args(args)
        .status()
        .map_err(|e| {
            BuildError::Tool(format!(
                "cannot run npm (TypeScript plugins need Node.js 20+ and npm): {e}"
            ))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(BuildError::Failed)
    }
}

/// A TypeScript project: installs the pinned tooling when `node_modules`
/// is missing, then runs its `build` script (esbuild, then componentize-js).
fn build_ts(dir: &Path) -> Result<PathBuf, BuildError> {
    let manifest = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| BuildError::Tool(format!("cannot read package.json: {e}")))?;
    let name = npm_name(&manifest)
        .ok_or_else(|| BuildError::Tool("package.json has no \"name\"".into()))?;
    if !dir
        .join("node_modules")
        .join(".bin")
        .join("componentize-js")
        .exists()
    {
        eprintln!("installing the npm tooling (npm install: esbuild, componentize-js)");
        npm(
            dir,
            &["install", "--no-audit", "--no-fund", "--loglevel=error"],
        )?;
    }
    npm(dir, &["run", "build", "--silent"])?;
    let wasm = dir
        .join("target")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if wasm.is_file() {
        Ok(std::path::absolute(&wasm).unwrap_or(wasm))
    } else {
        Err(BuildError::Missing(wasm))
    }
}

/// Builds the project in `dir` and returns the component's path.
pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    match lang_of(dir)? {
        Lang::Ts => build_ts(dir),
        Lang::Rust => {
            ensure_target()?;
            let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
                .map_err(|e| BuildError::Tool(format!("cannot read Cargo.toml: {e}")))?;
            let name = package_name(&manifest)
                .ok_or_else(|| BuildError::Tool("Cargo.toml has no [package] name".into()))?;
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join("target"));
            let status = Command::new("cargo")
                .current_dir(dir)
                .args(["build", "--release", "--target", WASM_TARGET])
                .arg("--target-dir")
                .arg(&target_dir)
                .env_remove("CARGO_BUILD_TARGET")
                .env_remove("RUSTFLAGS")
                .status()
                .map_err(|e| BuildError::Tool(format!("cannot run cargo: {e}")))?;
            if !status.success() {
                return Err(BuildError::Failed);
            }
            let wasm = target_dir
                .join(WASM_TARGET)
                .join("release")
                .join(format!("{}.wasm", name.replace('-', "_")));
            if wasm.is_file() {
                Ok(wasm)
            } else {
                Err(BuildError::Missing(wasm))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_names() {
        assert_eq!(
            super::npm_name("{\"name\": \"achievement\", \"dependencies\": {\"name\": 1}}")
                .as_deref(),
            Some("achievement")
        );
        assert_eq!(
            super::package_name("[package]\nname = \"achievement\"\n").as_deref(),
            Some("achievement")
        );
        assert_eq!(
            super::package_name("[lib]\nname = \"x\"\n[package]\nversion = \"1\"\n"),
            None
        );
    }
}
