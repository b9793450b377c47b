//! Static description of a plugin: its event type, table, columns and route.

/// Column type in the plugin's table (Arrow/Parquet types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int64,
    Float64,
    Bool,
    /// Microseconds since the Unix epoch, UTC.
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

/// One column of the plugin's table.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    pub nullable: bool,
    pub description: &'static str,
}

impl Column {
    pub const fn new(name: &'static str, kind: ColumnType, description: &'static str) -> Self {
        Column {
            name,
            kind,
            nullable: false,
            description,
        }
    }
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, ColumnType::String, description)
    }
    pub const fn int64(name: &'static str, description: &'static str) -> Self {
        Self::new(name, ColumnType::Int64, description)
    }
    pub const fn float64(name: &'static str, description: &'static str) -> Self {
        Self::new(name, ColumnType::Float64, description)
    }
    pub const fn bool(name: &'static str, description: &'static str) -> Self {
        Self::new(name, ColumnType::Bool, description)
    }
    pub const fn timestamp(name: &'static str, description: &'static str) -> Self {
        Self::new(name, ColumnType::Timestamp, description)
    }
    /// The same column, allowing nulls ([`crate::Row::null`]).
    pub const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }
}

/// What a plugin owns.
#[derive(Clone, Copy, Debug)]
pub struct Info {
    /// Plugin name, e.g. `horse`.
    pub name: &'static str,
    /// Plugin version (semver); usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// The `event_type` the plugin owns.
    pub event_type: &'static str,
    /// The table its rows go to.
    pub table: &'static str,
    /// HTTP route as `METHOD /path/{field}/...`, if the API should serve one.
    pub route: Option<&'static str>,
    /// The plugin's own columns; the host adds the common ones.
    pub columns: &'static [Column],
}

impl Info {
    /// The route split into method and path template.
    pub fn route_parts(&self) -> Option<(&'static str, &'static str)> {
        let route = self.route?;
        Some(match route.split_once(' ') {
            Some((method, path)) => (method, path.trim_start()),
            None => ("POST", route),
        })
    }
}
