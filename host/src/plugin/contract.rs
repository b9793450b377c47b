//! The contract a plugin must meet beyond type-checking: a compatible
//! contract version and well-formed metadata (names, columns, route).

use std::fmt;

use super::LoadError;
use super::bindings::{PluginInfo, WitColumnType};

/// The contract package this host speaks; must match `wit/plugin.wit`.
pub const CONTRACT: Contract = Contract {
    package: "eventsift:plugin",
    interface: "plugin",
    version: "0.2.0",
    older: &["0.1.0"],
};

/// Columns every table has, filled by the host; plugins may not declare them.
pub const COMMON_COLUMNS: &[&str] = &[
    "event_id",
    "timestamp",
    "event_type",
    "host",
    "user_agent",
    "accept",
    "user_id",
    "game_id",
    "client_ts",
    "event_ts",
    "raw_event",
    "plugin_version",
    "source_partition",
    "source_offset",
    "dt",
];

/// Table names the host keeps for itself (and every name starting with `_`
/// or `.`, which query engines skip: the host's metadata lives there).
pub const RESERVED_TABLES: &[&str] = &["rejected_events"];
/// Most columns a plugin may declare.
pub const MAX_COLUMNS: usize = 256;
/// Longest column description.
pub const MAX_DESCRIPTION_BYTES: usize = 1 << 10;

/// Path prefixes eventsift keeps for itself: the public listener's and the
/// admin listener's (`/metrics`, `/plugins` and the status page live only
/// on the admin listener, but a plugin route there would be a trap for
/// whoever moves them back or puts both behind one proxy).
pub const RESERVED_PATHS: &[&str] = &[
    "/events",
    "/healthz",
    "/readyz",
    "/metrics",
    "/plugins",
    "/v1",
    "/openapi.json",
    "/status",
    "/status.json",
    "/status.js",
];

#[derive(Debug, Clone, Copy)]
pub struct Contract {
    pub package: &'static str,
    pub interface: &'static str,
    /// The current version (`wit/plugin.wit`).
    pub version: &'static str,
    /// Older versions served beside it (`wit/<version>/plugin.wit`, frozen):
    /// their `plugin` interface is the current one, only the imports differ.
    pub older: &'static [&'static str],
}

/// The contract version a plugin was built against, as found in its exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The full export name, e.g. `eventsift:plugin/plugin@0.1.0`.
    pub export: String,
    pub version: semver::Version,
}

impl Built {
    /// Whether the plugin can log (contract 0.2 and later).
    pub fn logs(&self) -> bool {
        self.version >= semver::Version::new(0, 2, 0)
    }
}

impl Contract {
    /// The exported interface name a compatible plugin has, without version.
    pub fn interface_name(&self) -> String {
        format!("{}/{}", self.package, self.interface)
    }

    /// Every version served, the current one first.
    pub fn served(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.version).chain(self.older.iter().copied())
    }

    /// Checks the versioned export name of a component against the versions
    /// this host serves (same major; for 0.x the same minor) and returns
    /// the one it was built against. `exports` are its export names.
    pub fn check_exports<'a>(
        &self,
        exports: impl Iterator<Item = &'a str>,
    ) -> Result<Built, LoadError> {
        let prefix = format!("{}@", self.interface_name());
        let exports: Vec<&str> = exports.collect();
        let Some(found) = exports.iter().find_map(|e| e.strip_prefix(&prefix)) else {
            return Err(LoadError::NotAPlugin {
                expected: format!("{}@{}", self.interface_name(), self.version),
                found: if exports.is_empty() {
                    "none".into()
                } else {
                    exports.join(", ")
                },
            });
        };
        let incompatible = || LoadError::Incompatible {
            found: format!("{}@{found}", self.package),
            expected: self
                .served()
                .map(|v| format!("{}@{v}", self.package))
                .collect::<Vec<_>>()
                .join(" and "),
        };
        let theirs = semver::Version::parse(found).map_err(|_| incompatible())?;
        let compatible = self.served().any(|v| {
            let ours = semver::Version::parse(v).expect("contract versions are semver");
            ours.major == theirs.major && (ours.major > 0 || ours.minor == theirs.minor)
        });
        if compatible {
            Ok(Built {
                export: format!("{prefix}{found}"),
                version: theirs,
            })
        } else {
            Err(incompatible())
        }
    }
}

impl fmt::Display for Contract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.package, self.version)
    }
}

/// Column type of a plugin table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    Timestamp,
}

impl ColumnType {
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int64 => "int64",
            ColumnType::Float64 => "float64",
            ColumnType::Bool => "bool",
            ColumnType::Timestamp => "timestamp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ColumnSpec {
    pub name: String,
    pub kind: ColumnType,
    pub nullable: bool,
    pub description: String,
}

/// An HTTP route: method and path template with `{field}` segments.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Route {
    pub method: String,
    pub path: String,
}

impl Route {
    /// The route with parameter names erased, for conflict checks:
    /// `POST /guild/{}`.
    pub fn shape(&self) -> String {
        let segments: Vec<&str> = self
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { "{}" } else { s })
            .collect();
        format!("{} {}", self.method, segments.join("/"))
    }

    /// The names of the path parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Validated metadata of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginMeta {
    pub name: String,
    pub version: String,
    pub event_type: String,
    pub table: String,
    pub columns: Vec<ColumnSpec>,
    pub route: Option<Route>,
}

impl PluginMeta {
    /// Checks what `describe()` returned against the contract's rules.
    pub fn from_info(info: PluginInfo) -> Result<Self, LoadError> {
        let bad = |msg: String| LoadError::InvalidMeta(msg);
        check_ident("plugin name", &info.name, true)?;
        if info.version.len() > 64 {
            return Err(bad(format!(
                "version of {} bytes (at most 64)",
                info.version.len()
            )));
        }
        semver::Version::parse(&info.version)
            .map_err(|e| bad(format!("version {:?} is not semver: {e}", info.version)))?;
        check_ident("event type", &info.event_type, false)?;
        check_ident("table", &info.table, false)?;
        if RESERVED_TABLES.contains(&info.table.as_str())
            || !info.table.starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(bad(format!(
                "table {:?} is reserved for the host (tables start with a letter)",
                info.table
            )));
        }
        if info.columns.len() > MAX_COLUMNS {
            return Err(bad(format!(
                "{} columns declared (at most {MAX_COLUMNS})",
                info.columns.len()
            )));
        }
        let mut columns: Vec<ColumnSpec> = Vec::with_capacity(info.columns.len());
        for c in info.columns {
            check_ident("column", &c.name, false)?;
            if c.description.len() > MAX_DESCRIPTION_BYTES {
                return Err(bad(format!(
                    "column {:?} has a description of {} bytes (at most {MAX_DESCRIPTION_BYTES})",
                    c.name,
                    c.description.len()
                )));
            }
            if COMMON_COLUMNS.contains(&c.name.as_str()) {
                return Err(bad(format!(
                    "column {:?} is a common column the host fills",
                    c.name
                )));
            }
            if columns.iter().any(|o| o.name == c.name) {
                return Err(bad(format!("column {:?} is declared twice", c.name)));
            }
            let kind = match c.kind {
                WitColumnType::String => ColumnType::String,
                WitColumnType::Int64 => ColumnType::Int64,
                WitColumnType::Float64 => ColumnType::Float64,
                WitColumnType::Bool => ColumnType::Bool,
                WitColumnType::Timestamp => ColumnType::Timestamp,
            };
            columns.push(ColumnSpec {
                name: c.name,
                kind,
                nullable: c.nullable,
                description: c.description,
            });
        }
        let route = info.route.map(|r| Route {
            method: r.method,
            path: r.path,
        });
        if let Some(route) = &route {
            check_route(route)?;
        }
        Ok(PluginMeta {
            name: info.name,
            version: info.version,
            event_type: info.event_type,
            table: info.table,
            columns,
            route,
        })
    }
}

/// Whether a table may go from `old` columns to `new` ones with files of
/// both in one folder: new columns must be nullable; a kept column keeps its
/// type; a non-null column is never dropped.
pub fn check_schema_change(old: &[ColumnSpec], new: &[ColumnSpec]) -> Result<(), String> {
    for o in old {
        match new.iter().find(|n| n.name == o.name) {
            Some(n) if n.kind != o.kind => {
                return Err(format!(
                    "column {:?} changes type from {} to {}",
                    o.name,
                    o.kind.as_str(),
                    n.kind.as_str()
                ));
            }
            Some(_) => {}
            None if !o.nullable => {
                return Err(format!("non-null column {:?} is dropped", o.name));
            }
            None => {}
        }
    }
    for n in new {
        if !n.nullable && !old.iter().any(|o| o.name == n.name) {
            return Err(format!(
                "new column {:?} is not nullable (older files have no value for it)",
                n.name
            ));
        }
    }
    Ok(())
}

/// `[a-z_][a-z0-9_]*` (with `-` too when `dash`), at most 64 bytes.
fn check_ident(what: &str, s: &str, dash: bool) -> Result<(), LoadError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (dash && b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(LoadError::InvalidMeta(format!(
            "{what} {s:?} must be 1 to 64 characters of a-z, 0-9{} or _, starting with a letter or _",
            if dash { ", -" } else { "" }
        )))
    }
}

fn check_route(route: &Route) -> Result<(), LoadError> {
    let bad = |why: &str| Err(LoadError::InvalidMeta(format!("route {route}: {why}")));
    if !["GET", "POST", "PUT", "DELETE"].contains(&route.method.as_str()) {
        return bad("method must be GET, POST, PUT or DELETE");
    }
    if !route.path.starts_with('/') || route.path.len() > 256 {
        return bad("path must start with / and be at most 256 bytes");
    }
    if RESERVED_PATHS
        .iter()
        .any(|p| route.path == *p || route.path.starts_with(&format!("{p}/")))
    {
        return bad(&format!(
            "path is reserved for the host (eventsift keeps {} and what is under them)",
            RESERVED_PATHS.join(", ")
        ));
    }
    let mut params: Vec<&str> = Vec::new();
    for seg in route.path[1..].split('/').filter(|s| !s.is_empty()) {
        if let Some(inner) = seg.strip_prefix('{') {
            let Some(name) = inner.strip_suffix('}') else {
                return bad("unclosed {");
            };
            check_ident("route parameter", name, false)?;
            if params.contains(&name) {
                return bad("a parameter appears twice");
            }
            params.push(name);
        } else if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return bad("literal segments may use letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(spec: &str) -> Vec<ColumnSpec> {
        spec.split_whitespace()
            .map(|c| {
                let (name, kind) = c.split_once(':').unwrap();
                let nullable = kind.ends_with('?');
                let kind = match kind.trim_end_matches('?') {
                    "string" => ColumnType::String,
                    "int64" => ColumnType::Int64,
                    _ => ColumnType::Float64,
                };
                ColumnSpec {
                    name: name.into(),
                    kind,
                    nullable,
                    description: String::new(),
                }
            })
            .collect()
    }

    #[test]
    fn schema_changes() {
        let check = |old: &str, new: &str, expect: &str| {
            let got = match check_schema_change(&cols(old), &cols(new)) {
                Ok(()) => "ok".to_owned(),
                Err(e) => e,
            };
            assert_eq!(got, expect, "{old} -> {new}");
        };
        check("a:string b:int64", "a:string b:int64", "ok");
        check("a:string b:int64", "a:string b:int64 c:string?", "ok");
        check("a:string b:int64 c:string?", "a:string b:int64", "ok");
        check("a:string b:int64", "a:string? b:int64", "ok");
        check(
            "a:string b:int64",
            "a:string b:string",
            "column \"b\" changes type from int64 to string",
        );
        check(
            "a:string b:int64",
            "a:string",
            "non-null column \"b\" is dropped",
        );
        check(
            "a:string",
            "a:string c:int64",
            "new column \"c\" is not nullable (older files have no value for it)",
        );
    }

    fn check(exports: &[&str], expect: &str) {
        let got = match CONTRACT.check_exports(exports.iter().copied()) {
            Ok(built) => format!("ok {} logs={}", built.version, built.logs()),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn contract_versions() {
        check(&["eventsift:plugin/plugin@0.1.0"], "ok 0.1.0 logs=false");
        check(&["eventsift:plugin/plugin@0.1.7"], "ok 0.1.7 logs=false");
        check(&["eventsift:plugin/plugin@0.2.0"], "ok 0.2.0 logs=true");
        check(&["eventsift:plugin/plugin@0.2.3"], "ok 0.2.3 logs=true");
        check(
            &["eventsift:plugin/plugin@0.3.0"],
            "incompatible contract: plugin built against eventsift:plugin@0.3.0, this host speaks \
             eventsift:plugin@0.2.0 and eventsift:plugin@0.1.0 (same major version needed, and \
             for 0.x the same minor)",
        );
        check(
            &["eventsift:plugin/plugin@1.0.0"],
            "incompatible contract: plugin built against eventsift:plugin@1.0.0, this host speaks \
             eventsift:plugin@0.2.0 and eventsift:plugin@0.1.0 (same major version needed, and \
             for 0.x the same minor)",
        );
        check(
            &["wasi:http/incoming-handler@0.2.0"],
            "not an eventsift plugin: it exports no `eventsift:plugin/plugin@0.2.0` interface \
             (exports: wasi:http/incoming-handler@0.2.0)",
        );
    }

    #[test]
    fn contract_matches_the_wit_file() {
        let wit = include_str!("../../../wit/plugin.wit");
        assert!(
            wit.contains(&format!("package {};", CONTRACT)),
            "update CONTRACT to match wit/plugin.wit"
        );
        assert!(wit.contains(&format!("interface {} {{", CONTRACT.interface)));
    }

    /// An older version is served with the current `plugin` interface's
    /// types: its interface must be the current one, word for word (doc
    /// comments aside), and it must import nothing.
    #[test]
    fn older_contracts_share_the_plugin_interface() {
        fn interface(wit: &str) -> String {
            let start = wit.find("interface plugin {").expect("interface plugin");
            let end = start + wit[start..].find("\n}\n").expect("end of interface");
            wit[start..end]
                .lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("///") && !l.is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        }
        let current = include_str!("../../../wit/plugin.wit");
        let old = include_str!("../../../wit/0.1.0/plugin.wit");
        assert_eq!(CONTRACT.older, &["0.1.0"], "add the new older version here");
        assert!(old.contains("package eventsift:plugin@0.1.0;"));
        assert_eq!(interface(current), interface(old));
        assert!(!old.contains("import "), "0.1.0 imports nothing");
    }

    #[test]
    fn route_rules() {
        let route = |m: &str, p: &str| Route {
            method: m.into(),
            path: p.into(),
        };
        assert!(
            check_route(&route(
                "POST",
                "/purchase_a_horse/{speed}/{size}/{quantity}"
            ))
            .is_ok()
        );
        assert!(check_route(&route("GET", "/")).is_ok());
        for (m, p) in [
            ("PATCH", "/x"),
            ("POST", "x"),
            ("POST", "/events/{t}"),
            ("POST", "/v1/batch"),
            ("GET", "/v1"),
            ("GET", "/openapi.json"),
            ("GET", "/status"),
            ("GET", "/status.json"),
            ("GET", "/status.js"),
            ("POST", "/status/{x}"),
            ("GET", "/metrics"),
            ("GET", "/plugins/{p}"),
            ("POST", "/a/{b"),
            ("POST", "/a/{b}/{b}"),
        ] {
            assert!(check_route(&route(m, p)).is_err(), "{m} {p}");
        }
        // Only the exact paths and what is under them: a prefix is no clash.
        assert!(check_route(&route("POST", "/status_update/{u}")).is_ok());
        let why = check_route(&route("GET", "/status"))
            .unwrap_err()
            .to_string();
        assert!(
            why.contains("reserved for the host") && why.contains("/status.json"),
            "{why}"
        );
        assert_eq!(route("POST", "/guild/{action}").shape(), "POST /guild/{}");
    }
}
