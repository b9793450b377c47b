//! Query results as a table (like the Presto CLI), CSV or JSON.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use super::QueryError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Renders `batches` in `format` (ending in a newline).
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    let err = |e: &dyn std::fmt::Display| QueryError(e.to_string());
    match format {
        Format::Table => Ok(format!(
            "{}\n",
            pretty_format_batches(batches).map_err(|e| err(&e))?
        )),
        Format::Csv => {
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(Vec::new());
            for b in batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            String::from_utf8(w.into_inner()).map_err(|e| err(&e))
        }
        Format::Json => {
            let mut w = arrow_json::ArrayWriter::new(Vec::new());
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            w.write_batches(&refs).map_err(|e| err(&e))?;
            w.finish().map_err(|e| err(&e))?;
            let mut s = String::from_utf8(w.into_inner()).map_err(|e| err(&e))?;
            if s.is_empty() {
                s.push_str("[]");
            }
            s.push('\n');
            Ok(s)
        }
    }
}
