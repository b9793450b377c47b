//! Builds the TypeScript plugins (`plugins-ts/<name>/component.ts`) into
//! components, with the npm tooling `plugins-ts/package.json` pins (esbuild
//! bundles the TypeScript, componentize-js makes the component). Shared by
//! the test artifacts' build script and `cargo xtask plugins --ts`.
//!
//! Needs Node.js 20+ and npm; `npm ci` installs the tooling into
//! `plugins-ts/node_modules` when it is missing or older than the lock
//! file. A component is rebuilt only when its bundled JavaScript changed
//! (componentize-js takes ~15 s a plugin here).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The TypeScript plugins: folders under `plugins-ts/` with a `component.ts`.
pub const TS_PLUGINS: &[&str] = &["achievement", "horse"];

/// The sources a build depends on (for `cargo:rerun-if-changed`; the
/// build script uses them, xtask does not).
#[allow(dead_code)]
pub const TS_INPUTS: &[&str] = &[
    "sdk-ts/src",
    "sdk-ts/package.json",
    "plugins-ts/package.json",
    "plugins-ts/package-lock.json",
    "plugins-ts/achievement",
    "plugins-ts/horse",
    "wit/plugin.wit",
];

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        format!(
            "{what}: cannot run {:?}: {e} (the TypeScript plugins need Node.js 20+ and npm)",
            cmd.get_program()
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Installs the pinned tooling when `node_modules` is missing or stale.
pub fn ensure_tooling(root: &Path) -> Result<(), String> {
    let dir = root.join("plugins-ts");
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    let lock = modified(&dir.join("package-lock.json"));
    if installed.is_some() && installed >= lock {
        return Ok(());
    }
    run(
        Command::new("npm").current_dir(&dir).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]),
        "npm ci in plugins-ts",
    )
}

/// Builds every TypeScript plugin; returns `(name, component path)`.
pub fn build(root: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    ensure_tooling(root)?;
    let dir = root.join("plugins-ts");
    let bin = dir.join("node_modules").join(".bin");
    // In CI's cached target folder when there is one: a component is
    // rebuilt only when its bundle changed, from one clone to the next too.
    let out = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins-ts");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut built = Vec::new();
    for name in TS_PLUGINS {
        let js = out.join(format!("{name}.js"));
        let fresh_js = out.join(format!(".{name}.js.new"));
        run(
            Command::new(bin.join("esbuild"))
                .current_dir(&dir)
                .arg(format!("{name}/component.ts"))
                .args([
                    "--bundle",
                    "--format=esm",
                    "--platform=neutral",
                    "--external:eventsift:plugin/*",
                    "--log-level=warning",
                ])
                .arg(format!("--outfile={}", fresh_js.display())),
            &format!("esbuild {name}"),
        )?;
        let wasm = out.join(format!("{name}.wasm"));
        let same = std::fs::read(&fresh_js).ok() == std::fs::read(&js).ok();
        std::fs::rename(&fresh_js, &js).map_err(|e| format!("{}: {e}", js.display()))?;
        if !(same && wasm.exists()) {
            let tmp = out.join(format!(".{name}.wasm.tmp"));
            run(
                Command::new(bin.join("componentize-js"))
                    .current_dir(&dir)
                    .arg(&js)
                    .arg("--wit")
                    .arg(root.join("wit").join("plugin.wit"))
                    .args(["--world-name", "event-plugin"])
                    .args([
                        "--disable",
                        "stdio",
                        "random",
                        "clocks",
                        "http",
                        "fetch-event",
                    ])
                    .arg("-o")
                    .arg(&tmp),
                &format!("componentize-js {name}"),
            )?;
            std::fs::rename(&tmp, &wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
        }
        built.push((name.to_string(), wasm));
    }
    Ok(built)
}
