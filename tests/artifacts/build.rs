//! Builds every bundled plugin and hostile fixture into a component, and
//! the TypeScript plugins (`plugins-ts/`), and writes their paths as
//! constants, so tests never skip for a missing file.

#[path = "ts_build.rs"]
mod ts_build;
#[path = "wasm_build.rs"]
mod wasm_build;

use std::env;
use std::fmt::Write;
use std::path::PathBuf;

const PACKAGES: &[&str] = &[
    "sword",
    "horse",
    "guild",
    "default",
    "spellbook",
    "fixture-loop",
    "fixture-bomb",
    "fixture-panic",
    "fixture-fs",
    "fixture-sword_v2",
    "fixture-incompatible",
    "fixture-sword_v3_bad",
    "fixture-hostile",
    "fixture-reserved",
    "fixture-wide",
    "fixture-impostor",
    "fixture-slow",
    "fixture-legacy",
    "fixture-contract_0_1",
    "fixture-chatty",
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    for dir in [
        "wit",
        "sdk",
        "plugins",
        "tests/fixtures",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let cargo = PathBuf::from(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let built = wasm_build::build(&cargo, &root, PACKAGES).unwrap_or_else(|e| panic!("{e}"));
    let mut code = String::new();
    for (package, path) in &built {
        let name = package.trim_start_matches("fixture-").to_uppercase();
        writeln!(code, "/// `{package}` built for wasm32-wasip2.").unwrap();
        writeln!(
            code,
            "pub const {name}: &str = {:?};",
            path.display().to_string()
        )
        .unwrap();
    }
    // The TypeScript plugins (Node.js and npm: the test suite needs them).
    for input in ts_build::TS_INPUTS {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    let built = ts_build::build(&root).unwrap_or_else(|e| panic!("{e}"));
    for (name, path) in &built {
        writeln!(code, "/// `plugins-ts/{name}` built with componentize-js.").unwrap();
        writeln!(
            code,
            "pub const TS_{}: &str = {:?};",
            name.to_uppercase(),
            path.display().to_string()
        )
        .unwrap();
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(out, code).unwrap();
}
