//! `eventsift plugin new`: a plugin project in a new folder.

use std::path::{Path, PathBuf};

pub use super::build::Lang;
use crate::plugin::Route;

/// The SDK's sources, vendored into every new project (`vendor/`). The
/// list is checked against `sdk/src` by a unit test.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("columns.rs", include_str!("../../../sdk/src/columns.rs")),
    ("driver.rs", include_str!("../../../sdk/src/driver.rs")),
    ("event.rs", include_str!("../../../sdk/src/event.rs")),
    ("info.rs", include_str!("../../../sdk/src/info.rs")),
    ("json.rs", include_str!("../../../sdk/src/json.rs")),
    ("lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("log.rs", include_str!("../../../sdk/src/log.rs")),
    ("scan.rs", include_str!("../../../sdk/src/scan.rs")),
    ("testing.rs", include_str!("../../../sdk/src/testing.rs")),
    ("wasm.rs", include_str!("../../../sdk/src/wasm.rs")),
];

/// The TypeScript SDK's sources (`sdk-ts/src`), vendored into every new
/// TypeScript project; checked against the folder by a unit test.
const TS_SDK_SOURCES: &[(&str, &str)] = &[
    ("alnum.ts", include_str!("../../../sdk-ts/src/alnum.ts")),
    ("columns.ts", include_str!("../../../sdk-ts/src/columns.ts")),
    (
        "component.ts",
        include_str!("../../../sdk-ts/src/component.ts"),
    ),
    ("driver.ts", include_str!("../../../sdk-ts/src/driver.ts")),
    ("event.ts", include_str!("../../../sdk-ts/src/event.ts")),
    ("format.ts", include_str!("../../../sdk-ts/src/format.ts")),
    ("index.ts", include_str!("../../../sdk-ts/src/index.ts")),
    ("log.ts", include_str!("../../../sdk-ts/src/log.ts")),
    ("scan.ts", include_str!("../../../sdk-ts/src/scan.ts")),
    ("testing.ts", include_str!("../../../sdk-ts/src/testing.ts")),
];
const TS_SDK_MANIFEST: &str = include_str!("../../../sdk-ts/package.json");

/// The npm tooling's lock file (`plugins-ts`), rewritten for a new project:
/// the exact esbuild and componentize-js trees this release was tested with.
const TS_LOCK: &str = include_str!("../../../plugins-ts/package-lock.json");

/// The npm tooling a TypeScript project pins (as `plugins-ts/package.json`
/// does; checked by a unit test). `@bytecodealliance/wizer` newer than
/// 10.0.0 fails a clean install.
const TS_DEV_DEPENDENCIES: &str = r#"  "devDependencies": {
    "@bytecodealliance/componentize-js": "0.23.0",
    "@bytecodealliance/preview2-shim": "0.25.0",
    "esbuild": "0.25.12"
  },
  "overrides": {
    "@bytecodealliance/wizer": "10.0.0"
  }"#;

/// The types of the contract's import inside a component (for editors).
const TS_CONTRACT_TYPES: &str = include_str!("../../../plugins-ts/eventsift-contract.d.ts");

/// The contract the SDK binds (`wit_bindgen::generate!` reads `../wit`).
const WIT: &str = include_str!("../../../wit/plugin.wit");

/// This workspace's lock file: a new project resolves to the exact versions
/// this release was built and tested with (cargo drops what it does not use).
const LOCK: &str = include_str!("../../../Cargo.lock");

/// The SDK's manifest outside the workspace (its dependencies as the
/// workspace pins them; checked by a unit test).
const SDK_MANIFEST: &str = r#"[package]
name = "eventsift-sdk"
description = "Write eventsift event-type plugins (WebAssembly components) in plain Rust (vendored by `eventsift plugin new`)"
version = "@VERSION@"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
serde = { version = "1", features = ["derive"] }
serde_json = { version = "1", features = ["raw_value"] }
smallvec = "1"

[target.'cfg(target_arch = "wasm32")'.dependencies]
wit-bindgen = { version = "=0.63.0", default-features = false, features = ["macros", "realloc"] }
"#;

/// Options of `plugin new`.
#[derive(Debug, Clone)]
pub struct NewOptions {
    pub name: String,
    pub lang: Lang,
    pub event_type: Option<String>,
    pub table: Option<String>,
    pub route: Option<String>,
}

/// A column of the scaffold: one per route parameter.
struct Field {
    name: String,
    /// Whole numbers for names that read like counts.
    count: bool,
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    #[error(
        "{0:?} is not a plugin name: use 1 to 64 lower-case letters, digits and '_' or '-', starting with a letter"
    )]
    Name(String),
    #[error("{what} {value:?}: {why}")]
    Invalid {
        what: &'static str,
        value: String,
        why: String,
    },
    #[error("{0} already exists: choose another name or remove it")]
    Exists(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Creates the project `parent/<name>` and returns its folder.
pub fn create(parent: &Path, options: &NewOptions) -> Result<PathBuf, NewError> {
    let name = options.name.as_str();
    let ident = name.replace('-', "_");
    if !identifier(&ident) {
        return Err(NewError::Name(name.to_owned()));
    }
    let event_type = options.event_type.clone().unwrap_or_else(|| ident.clone());
    let table = options
        .table
        .clone()
        .unwrap_or_else(|| format!("{ident}_events"));
    for (what, value) in [("event type", &event_type), ("table", &table)] {
        if !identifier(value) {
            return Err(NewError::Invalid {
                what,
                value: value.clone(),
                why: "use lower-case letters, digits and '_', starting with a letter (at most 64)"
                    .into(),
            });
        }
    }
    let route = options
        .route
        .clone()
        .unwrap_or_else(|| format!("POST /{event_type}/{{value}}"));
    let parsed = parse_route(&route).map_err(|why| NewError::Invalid {
        what: "route",
        value: route.clone(),
        why: why.into(),
    })?;
    let fields: Vec<Field> = parsed
        .params()
        .map(|p| Field {
            count: ["quantity", "count", "amount", "level", "score"]
                .iter()
                .any(|w| p.contains(w)),
            name: p.to_owned(),
        })
        .collect();
    let dir = parent.join(name);
    if dir.exists() {
        return Err(NewError::Exists(dir));
    }
    let files = match options.lang {
        Lang::Rust => project_files(name, &ident, &event_type, &table, &route, &fields),
        Lang::Ts => ts_project_files(name, &ident, &event_type, &table, &route, &fields),
    };
    for (path, text) in files {
        let path = dir.join(path);
        let io = |source| NewError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().unwrap_or(&dir)).map_err(io)?;
        std::fs::write(&path, text).map_err(|source| NewError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(dir)
}

/// `METHOD /path/{param}`; the contract's full rules are checked when the
/// component is built (`plugin build` runs `plugin check`).
fn parse_route(route: &str) -> Result<Route, &'static str> {
    let (method, path) = route
        .split_once(' ')
        .ok_or("write it as METHOD /path, e.g. \"POST /unlock/{badge}\"")?;
    if !["GET", "POST", "PUT", "DELETE"].contains(&method) {
        return Err("the method must be GET, POST, PUT or DELETE");
    }
    let route = Route {
        method: method.to_owned(),
        path: path.trim().to_owned(),
    };
    if !route.path.starts_with('/') {
        return Err("the path must start with '/'");
    }
    if !route.params().all(identifier) {
        return Err("each {param} must be a lower-case identifier");
    }
    Ok(route)
}

fn camel(ident: &str) -> String {
    ident
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Every file of a new project, as (relative path, text).
fn project_files(
    name: &str,
    ident: &str,
    event_type: &str,
    table: &str,
    route: &str,
    fields: &[Field],
) -> Vec<(PathBuf, String)> {
    let version = env!("CARGO_PKG_VERSION");
    let ty = camel(ident);
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    files.push((
        "Cargo.toml".into(),
        format!(
            r#"[package]
name = "{name}"
description = "eventsift plugin: {event_type} events into {table}"
version = "0.1.0"
edition = "2024"
rust-version = "1.95"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]   # cdylib: the component; rlib: native tests

[dependencies]
# The SDK, vendored by `eventsift plugin new` {version}.
eventsift-sdk = {{ path = "vendor/eventsift-sdk" }}

# A project of its own, even when created inside another workspace.
[workspace]

[profile.release]
lto = true
codegen-units = 1
panic = "abort"
strip = "debuginfo"
"#
        ),
    ));
    files.push(("Cargo.lock".into(), LOCK.to_owned()));
    files.push((".gitignore".into(), "/target\n".to_owned()));
    let columns = per_field(
        fields,
        |n| format!("            Column::int64(\"{n}\", \"{n}: a whole number >= 0\"),\n"),
        |n| format!("            Column::string(\"{n}\", \"{n}: letters, digits, '-' or '_'\"),\n"),
    );
    let getters = per_field(
        fields,
        |n| format!("        row.i64(event.count(\"{n}\")?);\n"),
        |n| format!("        row.str(event.token(\"{n}\", 64)?);\n"),
    );
    let (sample_text, reason) = samples(event_type, fields);
    let (good, bad) = route_fields(&sample_text);
    let typed_good = &good;
    let bad_reason = reason.replace('"', "\\\"");
    let tests = if fields.is_empty() {
        String::new()
    } else {
        format!(
            r##"
#[cfg(test)]
mod tests {{
    use super::{ty};
    use eventsift_sdk::testing::validate;

    #[test]
    fn accepts_a_good_event() {{
        let (fields, reply) = validate::<{ty}>(r#"{good}"#).unwrap();
        assert_eq!(fields, r#"{typed_good}"#);
        assert_eq!(reply, "ok\n");
    }}

    #[test]
    fn names_the_field_it_rejects() {{
        assert_eq!(
            validate::<{ty}>(r#"{bad}"#).unwrap_err(),
            "{bad_reason}"
        );
    }}
}}
"##,
        )
    };
    files.push((
        "src/lib.rs".into(),
        format!(
            r#"//! eventsift plugin: `{event_type}` events into `{table}`, routed at
//! `{route}`.

use eventsift_sdk::prelude::*;

pub struct {ty};

impl Plugin for {ty} {{
    const INFO: Info = Info {{
        name: "{name}",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "{event_type}",
        table: "{table}",
        route: Some("{route}"),
        columns: &[
{columns}        ],
    }};

    /// One value per column, in column order; `Err` names the field.
    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {{
{getters}        Ok("ok\n".into())
    }}
}}

eventsift_sdk::export!({ty});
{tests}"#
        ),
    ));
    // Samples: what `plugin test` sends (lines as `/v1/batch` items).
    files.push(("samples.jsonl".into(), sample_text));
    files.push((
        "README.md".into(),
        format!(
            "# {name}\n\nAn eventsift plugin: `{event_type}` events into the table `{table}`, \
             routed at `{route}`.\n\n```sh\ncargo test                                   # native unit tests\n\
             eventsift plugin build                       # the component, checked\n\
             eventsift plugin test target/wasm32-wasip2/release/{ident}.wasm --events samples.jsonl\n\
             cp target/wasm32-wasip2/release/{ident}.wasm <the daemon's plugin folder>/\n```\n\n\
             `vendor/` holds the eventsift SDK {version} and its contract (`vendor/wit`).\n"
        ),
    ));
    files.push((
        "vendor/eventsift-sdk/Cargo.toml".into(),
        SDK_MANIFEST.replace("@VERSION@", version),
    ));
    for (file, text) in SDK_SOURCES {
        files.push((
            PathBuf::from("vendor/eventsift-sdk/src").join(file),
            (*text).to_owned(),
        ));
    }
    files.push(("vendor/wit/plugin.wit".into(), WIT.to_owned()));
    files
}

/// One line per field: `count(name)` for counts, `other(name)` for the rest.
fn per_field(
    fields: &[Field],
    count: impl Fn(&str) -> String,
    other: impl Fn(&str) -> String,
) -> String {
    fields
        .iter()
        .map(|f| {
            if f.count {
                count(&f.name)
            } else {
                other(&f.name)
            }
        })
        .collect()
}

/// One sample event per line (a `/v1/batch` item), the first good and the
/// second meant to be rejected; and the reason the second gets.
fn samples(event_type: &str, fields: &[Field]) -> (String, String) {
    let body = |bad: bool| -> String {
        fields
            .iter()
            .map(|f| {
                let v = match (f.count, bad) {
                    (true, false) => "2".to_owned(),
                    (true, true) => "\"two\"".to_owned(),
                    (false, _) => format!("\"{}\"", if bad { "a b" } else { "gold" }),
                };
                format!(",\"{}\":{v}", f.name)
            })
            .collect()
    };
    let mut text = String::new();
    for (i, bad) in [false, true].into_iter().enumerate() {
        text.push_str(&format!(
            "{{\"event_type\":\"{event_type}\",\"event_id\":\"sample-{}\",\"user_id\":\"player-1\"{}}}\n",
            i + 1,
            body(bad)
        ));
    }
    let reason = match fields.first() {
        Some(f) if f.count => format!("{} must be a whole number >= 0, got \"two\"", f.name),
        Some(f) => format!(
            "{} must be 1 to 64 letters, digits, '-' or '_', got \"a b\"",
            f.name
        ),
        None => String::new(),
    };
    (text, reason)
}

/// The route's fields of the two samples (`{"badge":"gold",...}`), as the
/// API passes them to `validate`.
fn route_fields(samples: &str) -> (String, String) {
    let mut lines = samples.lines().map(|line| {
        let body = line
            .split_once("\"user_id\":\"player-1\"")
            .map(|(_, rest)| rest.trim_start_matches(',').trim_end_matches('}'))
            .unwrap_or("");
        format!("{{{body}}}")
    });
    let good = lines.next().unwrap_or_default();
    let bad = lines.next().unwrap_or_default();
    (good, bad)
}

/// Every file of a new TypeScript project, as (relative path, text).
fn ts_project_files(
    name: &str,
    ident: &str,
    event_type: &str,
    table: &str,
    route: &str,
    fields: &[Field],
) -> Vec<(PathBuf, String)> {
    let version = env!("CARGO_PKG_VERSION");
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    files.push((
        "package.json".into(),
        format!(
            r#"{{
  "name": "{name}",
  "version": "0.1.0",
  "private": true,
  "description": "eventsift plugin: {event_type} events into {table}",
  "type": "module",
  "scripts": {{
    "test": "esbuild test/plugin.test.ts --bundle --platform=node --format=esm --outfile=target/test/plugin.test.mjs --log-level=warning && node --test target/test/plugin.test.mjs",
    "build": "esbuild src/component.ts --bundle --format=esm --platform=neutral '--external:eventsift:plugin/*' --outfile=target/{ident}.js --log-level=warning && componentize-js target/{ident}.js --wit vendor/wit/plugin.wit --world-name event-plugin --disable stdio random clocks http fetch-event -o target/{ident}.wasm"
  }},
  "dependencies": {{
    "@eventsift/sdk": "file:vendor/eventsift-sdk"
  }},
{TS_DEV_DEPENDENCIES}
}}
"#
        ),
    ));
    files.push((
        "package-lock.json".into(),
        TS_LOCK
            .replacen("\"eventsift-plugins-ts\"", &format!("\"{name}\""), 2)
            .replace("file:../sdk-ts", "file:vendor/eventsift-sdk")
            .replace("\"../sdk-ts\"", "\"vendor/eventsift-sdk\""),
    ));
    files.push((".gitignore".into(), "node_modules/\ntarget/\n".to_owned()));
    files.push((
        "tsconfig.json".into(),
        r#"{
  "compilerOptions": {
    "target": "es2022",
    "module": "es2022",
    "moduleResolution": "bundler",
    "strict": true,
    "noEmit": true
  },
  "include": ["src", "test"]
}
"#
        .to_owned(),
    ));
    let columns = per_field(
        fields,
        |n| format!("    Column.int64('{n}', '{n}: a whole number >= 0'),\n"),
        |n| format!("    Column.string('{n}', \"{n}: letters, digits, '-' or '_'\"),\n"),
    );
    let getters = per_field(
        fields,
        |n| format!("    row.i64(event.count('{n}'));\n"),
        |n| format!("    row.str(event.token('{n}', 64));\n"),
    );
    files.push((
        "src/plugin.ts".into(),
        format!(
            r#"// eventsift plugin: `{event_type}` events into `{table}`, routed at
// `{route}`.

import {{ Column, definePlugin }} from '@eventsift/sdk';

export default definePlugin({{
  name: '{name}',
  version: '0.1.0',
  eventType: '{event_type}',
  table: '{table}',
  route: '{route}',
  columns: [
{columns}  ],
  // One value per column, in column order; the getters throw a Reject
  // naming the field.
  map(event, row) {{
{getters}    return 'ok\n';
  }},
}});
"#
        ),
    ));
    files.push((
        "src/component.ts".into(),
        r#"// The component's entry: the one module that binds the contract
// (eventsift:plugin@0.2.0). Leave it as it is; write the plugin in plugin.ts.

import { write } from 'eventsift:plugin/log@0.2.0';
import { exportPlugin } from '@eventsift/sdk';
import definition from './plugin';

export const plugin = exportPlugin(definition, write);
"#
        .to_owned(),
    ));
    files.push(("src/contract.d.ts".into(), TS_CONTRACT_TYPES.to_owned()));
    let (sample_text, bad_reason) = samples(event_type, fields);
    let (good, bad) = route_fields(&sample_text);
    let tests = if fields.is_empty() {
        String::new()
    } else {
        let escaped = bad_reason.replace('\\', "\\\\").replace('`', "\\`");
        format!(
            r#"
test('accepts a good event', () => {{
  assert.deepEqual(testing.validate(plugin, '{good}'), {{ fields: '{good}', reply: 'ok\n' }});
}});

test('names the field it rejects', () => {{
  assert.deepEqual(testing.validate(plugin, '{bad}'), {{ rejected: `{escaped}` }});
}});
"#
        )
    };
    files.push((
        "test/plugin.test.ts".into(),
        format!(
            r#"// Native unit tests (`npm test`): node's test runner over the plugin's
// own code; the getters behave as inside the component.

import {{ test }} from 'node:test';
import assert from 'node:assert/strict';
import {{ testing }} from '@eventsift/sdk';
import plugin from '../src/plugin';
{tests}"#
        ),
    ));
    files.push(("samples.jsonl".into(), sample_text));
    files.push((
        "README.md".into(),
        format!(
            "# {name}\n\nAn eventsift plugin in TypeScript: `{event_type}` events into the table \
             `{table}`, routed at `{route}`.\n\n```sh\nnpm install                                  # esbuild and componentize-js, pinned\n\
             npm test                                     # native unit tests\n\
             eventsift plugin build                       # the component, checked\n\
             eventsift plugin test target/{ident}.wasm --events samples.jsonl\n\
             cp target/{ident}.wasm <the daemon's plugin folder>/\n```\n\n\
             `vendor/` holds the eventsift TypeScript SDK {version} and its contract (`vendor/wit`).\n"
        ),
    ));
    files.push((
        "vendor/eventsift-sdk/package.json".into(),
        TS_SDK_MANIFEST.to_owned(),
    ));
    for (file, text) in TS_SDK_SOURCES {
        files.push((
            PathBuf::from("vendor/eventsift-sdk/src").join(file),
            (*text).to_owned(),
        ));
    }
    files.push(("vendor/wit/plugin.wit".into(), WIT.to_owned()));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_source_is_vendored() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let vendored: Vec<&str> = SDK_SOURCES.iter().map(|(f, _)| *f).collect();
        assert_eq!(on_disk, vendored);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk-ts/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let vendored: Vec<&str> = TS_SDK_SOURCES.iter().map(|(f, _)| *f).collect();
        assert_eq!(on_disk, vendored);
    }

    #[test]
    fn typescript_projects_pin_what_plugins_ts_pins() {
        let tooling = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins-ts/package.json"),
        )
        .unwrap();
        for line in TS_DEV_DEPENDENCIES.lines() {
            assert!(tooling.contains(line), "{line}");
        }
        assert!(
            TS_LOCK.contains("\"../sdk-ts\""),
            "the rewrite of the lock file"
        );
    }

    #[test]
    fn the_vendored_manifest_pins_what_the_workspace_pins() {
        let root =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
                .unwrap();
        let sdk = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/Cargo.toml"),
        )
        .unwrap();
        for dep in ["serde", "serde_json", "smallvec", "wit-bindgen"] {
            assert!(sdk.contains(&format!("{dep}.workspace = true")), "{dep}");
            let line = root
                .lines()
                .find(|l| l.starts_with(&format!("{dep} = ")))
                .unwrap_or_else(|| panic!("{dep} not in [workspace.dependencies]"));
            assert!(SDK_MANIFEST.contains(line), "{line}");
        }
    }

    #[test]
    fn names_are_checked_and_routes_become_columns() {
        let dir = tempfile::tempdir().unwrap();
        let bad = NewOptions {
            name: "Bad Name".into(),
            lang: Lang::Rust,
            event_type: None,
            table: None,
            route: None,
        };
        assert!(matches!(create(dir.path(), &bad), Err(NewError::Name(_))));
        let opts = NewOptions {
            name: "achievement".into(),
            lang: Lang::Rust,
            event_type: Some("unlock_achievement".into()),
            table: Some("achievements".into()),
            route: Some("POST /unlock/{badge}/{level}".into()),
        };
        let made = create(dir.path(), &opts).unwrap();
        let lib = std::fs::read_to_string(made.join("src/lib.rs")).unwrap();
        assert!(lib.contains("Column::string(\"badge\""), "{lib}");
        assert!(lib.contains("row.i64(event.count(\"level\")?);"), "{lib}");
        assert!(made.join("vendor/wit/plugin.wit").is_file());
        assert!(matches!(
            create(dir.path(), &opts),
            Err(NewError::Exists(_))
        ));
    }
}
