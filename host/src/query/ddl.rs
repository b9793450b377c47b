//! `eventsift ddl`: statements registering the warehouse's tables in other
//! engines as external, partitioned Parquet tables at their real location.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

use super::{QueryError, TableInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    Hive,
    Trino,
    Spark,
    Duckdb,
}

fn type_name(t: &DataType, dialect: Dialect) -> String {
    use Dialect::*;
    match (t, dialect) {
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Trino) => "varchar".into(),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, Duckdb) => "VARCHAR".into(),
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View, _) => "STRING".into(),
        (DataType::Int64, Trino) => "bigint".into(),
        (DataType::Int64, _) => "BIGINT".into(),
        (DataType::Int32, Trino) => "integer".into(),
        (DataType::Int32, Duckdb) => "INTEGER".into(),
        (DataType::Int32, _) => "INT".into(),
        (DataType::Float64, Trino) => "double".into(),
        (DataType::Float64, _) => "DOUBLE".into(),
        (DataType::Boolean, Trino) => "boolean".into(),
        (DataType::Boolean, _) => "BOOLEAN".into(),
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, Trino) => {
            "varbinary".into()
        }
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, Duckdb) => "BLOB".into(),
        (DataType::Binary | DataType::LargeBinary | DataType::BinaryView, _) => "BINARY".into(),
        (DataType::Timestamp(TimeUnit::Microsecond, _), Trino) => "timestamp(6)".into(),
        (DataType::Timestamp(_, Some(_)), Duckdb) => "TIMESTAMPTZ".into(),
        (DataType::Timestamp(..), _) => "TIMESTAMP".into(),
        (other, _) => other.to_string(),
    }
}

fn quote(name: &str, dialect: Dialect) -> String {
    match dialect {
        Dialect::Hive | Dialect::Spark => format!("`{name}`"),
        Dialect::Trino | Dialect::Duckdb => format!("\"{name}\""),
    }
}

/// The statements for `tables` (sorted by name) in `dialect`.
pub fn ddl(root: &str, tables: &[TableInfo], dialect: Dialect) -> Result<String, QueryError> {
    if dialect == Dialect::Duckdb && !root.starts_with("file://") {
        return Err(QueryError(format!(
            "the duckdb dialect reads local warehouses only; {root} is not local"
        )));
    }
    let mut out = String::new();
    out.push_str(&format!(
        "-- eventsift tables as external, partitioned Parquet tables ({})\n",
        match dialect {
            Dialect::Hive => "Hive",
            Dialect::Trino => "Trino, Hive connector in catalog `hive`",
            Dialect::Spark => "Spark SQL",
            Dialect::Duckdb => "DuckDB",
        }
    ));
    for t in tables {
        let name = quote(&t.name, dialect);
        let location = t.location.trim_end_matches('/');
        let columns: Vec<String> = t
            .schema
            .fields()
            .iter()
            .map(|f| {
                format!(
                    "  {} {}",
                    quote(f.name(), dialect),
                    type_name(f.data_type(), dialect)
                )
            })
            .collect();
        out.push('\n');
        match dialect {
            Dialect::Hive => {
                out.push_str(&format!(
                    "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{}\n)\nPARTITIONED BY (`dt` STRING)\nSTORED AS PARQUET\nLOCATION '{location}';\nMSCK REPAIR TABLE {name};\n",
                    columns.join(",\n")
                ));
            }
            Dialect::Spark => {
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} (\n{},\n  `dt` STRING\n)\nUSING parquet\nOPTIONS ('mergeSchema' 'true')\nPARTITIONED BY (`dt`)\nLOCATION '{location}';\nMSCK REPAIR TABLE {name};\n",
                    columns.join(",\n")
                ));
            }
            Dialect::Trino => {
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS hive.default.{name} (\n{},\n  \"dt\" varchar\n)\nWITH (\n  external_location = '{location}',\n  format = 'PARQUET',\n  partitioned_by = ARRAY['dt']\n);\nCALL hive.system.sync_partition_metadata('default', '{}', 'FULL');\n",
                    columns.join(",\n"),
                    t.name
                ));
            }
            Dialect::Duckdb => {
                let path = location.strip_prefix("file://").ok_or_else(|| {
                    QueryError(format!(
                        "the duckdb dialect reads local warehouses only; {location} is not local"
                    ))
                })?;
                out.push_str(&format!(
                    "CREATE OR REPLACE VIEW {name} AS\n  SELECT * FROM read_parquet('{path}/*/*.parquet',\n    hive_partitioning = true, hive_types = {{'dt': VARCHAR}}, union_by_name = true);\n"
                ));
            }
        }
    }
    Ok(out)
}
