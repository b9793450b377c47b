//! `eventsift ddl`: statements registering the warehouse's tables in other
//! engines as external, partitioned Parquet tables at their real location,
//! so that they read the warehouse as printed, and see new `dt=`
//! partitions without anyone re-running a repair:
//!
//! - Trino (Hive connector): partition projection on `dt` (a date from the
//!   warehouse's first day to `NOW`), with the catalog properties the
//!   header lists; local warehouses are `local://` locations (Trino's native
//!   local file system; `file://` lists nothing there);
//! - Spark SQL: data-source tables whose partitions the catalog does not
//!   track (`spark.sql.hive.manageFilesourcePartitions=false` when they are
//!   created), so every query lists the folders;
//! - Hive: external tables with `discover.partitions`, which a Hive 4
//!   metastore's partition management task honours (every
//!   `metastore.partition.management.task.frequency`, 5 minutes by default);
//!   older metastores need the `MSCK REPAIR TABLE` printed after each table;
//! - DuckDB: views over `read_parquet` (every query lists the files).

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

/// What the Trino catalog must set, stated at the top of its DDL.
const TRINO_HEADER: &str = "\
-- The catalog `hive` needs (etc/catalog/hive.properties):
--   connector.name=hive
--   hive.timestamp-precision=MICROSECONDS   (timestamps are microseconds)
--   hive.partition-projection-enabled=true  (dt is projected: new days appear by themselves,
--   hive.ignore-absent-partitions=true       from the first day below to today)
--   fs.native-local.enabled=true, local.location=/   (local warehouses: local:// paths)
--   fs.hadoop.enabled=true                  (HDFS warehouses)
-- and a metastore (hive.metastore=file or thrift). Data older than a table's first
-- projected day (a backfill) needs this DDL printed again.
CREATE SCHEMA IF NOT EXISTS hive.default;
";

/// The statements for `tables` (sorted by name) in `dialect`.
pub fn ddl(root: &str, tables: &[TableInfo], dialect: Dialect) -> Result<String, QueryError> {
    if dialect == Dialect::Duckdb && !root.starts_with("file://") {
        return Err(QueryError(format!(
            "the duckdb dialect reads local warehouses only; {root} is not local"
        )));
    }
    if tables.iter().any(|t| t.delta) {
        return delta_ddl(root, tables, dialect);
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
    match dialect {
        Dialect::Trino => out.push_str(TRINO_HEADER),
        Dialect::Hive => out.push_str(
            "-- New dt= partitions: a Hive 4 metastore discovers them ('discover.partitions');\n\
             -- with an older one, run the MSCK REPAIR TABLE statements again.\n",
        ),
        Dialect::Spark => out.push_str(
            "-- The catalog does not track these tables' partitions: every query sees new dt= folders.\n\
             SET spark.sql.hive.manageFilesourcePartitions=false;\n",
        ),
        Dialect::Duckdb => {}
    }
    for t in tables {
        let name = quote(&t.name, dialect);
        let location = t.location.trim_end_matches('/');
        // Trino's native local file system names paths `local://`.
        let trino_location = match location.strip_prefix("file://") {
            Some(path) => format!("local://{path}"),
            None => location.to_owned(),
        };
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
                    "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n{}\n)\nPARTITIONED BY (`dt` STRING)\nSTORED AS PARQUET\nLOCATION '{location}'\nTBLPROPERTIES ('discover.partitions' = 'true');\nMSCK REPAIR TABLE {name};\n",
                    columns.join(",\n")
                ));
            }
            Dialect::Spark => {
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {name} (\n{},\n  `dt` STRING\n)\nUSING parquet\nOPTIONS ('mergeSchema' 'true')\nPARTITIONED BY (`dt`)\nLOCATION '{location}';\n",
                    columns.join(",\n")
                ));
            }
            Dialect::Trino => {
                let first_day = t
                    .partitions
                    .iter()
                    .next()
                    .map_or("2020-01-01", String::as_str);
                out.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS hive.default.{name} (\n{},\n  \"dt\" varchar WITH (\n    partition_projection_type = 'DATE',\n    partition_projection_format = 'yyyy-MM-dd',\n    partition_projection_range = ARRAY['{first_day}', 'NOW']\n  )\n)\nWITH (\n  external_location = '{trino_location}',\n  format = 'PARQUET',\n  partitioned_by = ARRAY['dt'],\n  partition_projection_enabled = true,\n  partition_projection_location_template = '{trino_location}/dt=${{dt}}'\n);\n",
                    columns.join(",\n"),
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

/// Statements for Delta tables: each engine reads the table's own log, so
/// no columns or partitions are declared.
fn delta_ddl(root: &str, tables: &[TableInfo], dialect: Dialect) -> Result<String, QueryError> {
    let mut out = String::new();
    match dialect {
        Dialect::Hive => {
            return Err(QueryError(
                "Hive reads Delta tables only through a Delta connector; register them with \
                 --dialect trino (Delta Lake connector) or --dialect spark (delta-spark)"
                    .into(),
            ));
        }
        Dialect::Trino => out.push_str(
            "-- eventsift Delta tables (Trino, Delta Lake connector in catalog `delta`)\n\
             -- The catalog needs (etc/catalog/delta.properties):\n\
             --   connector.name=delta_lake\n\
             --   delta.register-table-procedure.enabled=true\n\
             --   fs.native-local.enabled=true, local.location=/   (local warehouses: local:// paths)\n\
             --   fs.hadoop.enabled=true                  (HDFS warehouses)\n\
             -- and a metastore (hive.metastore=file or thrift).\n\
             CREATE SCHEMA IF NOT EXISTS delta.default;\n",
        ),
        Dialect::Spark => out.push_str(
            "-- eventsift Delta tables (Spark SQL with delta-spark: spark.sql.extensions=\n\
             -- io.delta.sql.DeltaSparkSessionExtension, spark.sql.catalog.spark_catalog=\n\
             -- org.apache.spark.sql.delta.catalog.DeltaCatalog)\n",
        ),
        Dialect::Duckdb => {
            if !root.starts_with("file://") {
                return Err(QueryError(format!(
                    "the duckdb dialect reads local warehouses only; {root} is not local"
                )));
            }
            out.push_str("-- eventsift Delta tables (DuckDB, delta extension)\nINSTALL delta;\nLOAD delta;\n");
        }
    }
    for t in tables {
        let name = quote(&t.name, dialect);
        let location = t.location.trim_end_matches('/');
        out.push('\n');
        match dialect {
            Dialect::Trino => {
                let trino_location = match location.strip_prefix("file://") {
                    Some(path) => format!("local://{path}"),
                    None => location.to_owned(),
                };
                out.push_str(&format!(
                    "CALL delta.system.register_table(schema_name => 'default', table_name => '{}', table_location => '{trino_location}');\n",
                    t.name
                ));
            }
            Dialect::Spark => out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {name} USING DELTA LOCATION '{location}';\n"
            )),
            Dialect::Duckdb => {
                let path = location.strip_prefix("file://").unwrap_or(location);
                out.push_str(&format!(
                    "CREATE OR REPLACE VIEW {name} AS SELECT * FROM delta_scan('{path}');\n"
                ));
            }
            Dialect::Hive => unreachable!("refused above"),
        }
    }
    Ok(out)
}
