//! Column builders: rows written by [`crate::Plugin::map`] land directly in
//! one typed buffer per column, the shape the contract returns to the host
//! (text as one UTF-8 buffer with end offsets; nulls as a validity bitmap).

use crate::info::{Column, ColumnType};

/// Values of one column in row order.
#[derive(Clone, Debug, PartialEq)]
pub enum ColumnValues {
    /// One UTF-8 buffer; value `i` is `data[ends[i-1]..ends[i]]`.
    Text {
        data: Vec<u8>,
        ends: Vec<u32>,
    },
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Boolean(Vec<bool>),
    Timestamp(Vec<i64>),
}

/// One column's values plus its validity.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnData {
    pub values: ColumnValues,
    /// One bool per row (`false` = null); empty when no row is null.
    pub valid: Vec<bool>,
}

impl ColumnData {
    fn new(kind: ColumnType, capacity: usize) -> Self {
        let values = match kind {
            ColumnType::String => ColumnValues::Text {
                data: Vec::with_capacity(capacity * 8),
                ends: Vec::with_capacity(capacity),
            },
            ColumnType::Int64 => ColumnValues::Int64(Vec::with_capacity(capacity)),
            ColumnType::Float64 => ColumnValues::Float64(Vec::with_capacity(capacity)),
            ColumnType::Bool => ColumnValues::Boolean(Vec::with_capacity(capacity)),
            ColumnType::Timestamp => ColumnValues::Timestamp(Vec::with_capacity(capacity)),
        };
        ColumnData {
            values,
            valid: Vec::new(),
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        match &self.values {
            ColumnValues::Text { ends, .. } => ends.len(),
            ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => v.len(),
            ColumnValues::Float64(v) => v.len(),
            ColumnValues::Boolean(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is row `i` null?
    pub fn is_null(&self, i: usize) -> bool {
        !self.valid.is_empty() && !self.valid[i]
    }

    /// Text of row `i` (for text columns).
    pub fn text(&self, i: usize) -> Option<&str> {
        match &self.values {
            ColumnValues::Text { data, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                std::str::from_utf8(&data[start..ends[i] as usize]).ok()
            }
            _ => None,
        }
    }

    fn truncate(&mut self, rows: usize) {
        match &mut self.values {
            ColumnValues::Text { data, ends } => {
                ends.truncate(rows);
                data.truncate(ends.last().copied().unwrap_or(0) as usize);
            }
            ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => v.truncate(rows),
            ColumnValues::Float64(v) => v.truncate(rows),
            ColumnValues::Boolean(v) => v.truncate(rows),
        }
        self.valid.truncate(rows);
    }

    fn push_valid(&mut self, valid: bool, rows_before: usize) {
        if !valid && self.valid.is_empty() {
            self.valid.resize(rows_before, true);
        }
        if !self.valid.is_empty() {
            self.valid.push(valid);
        }
    }
}

/// The columns of a batch being built.
pub(crate) struct Columns {
    pub(crate) spec: &'static [Column],
    pub(crate) data: Vec<ColumnData>,
    pub(crate) rows: usize,
}

impl Columns {
    pub(crate) fn new(spec: &'static [Column], capacity: usize) -> Self {
        let data = spec
            .iter()
            .map(|c| ColumnData::new(c.kind, capacity))
            .collect();
        Columns {
            spec,
            data,
            rows: 0,
        }
    }

    pub(crate) fn row(&mut self) -> Row<'_> {
        Row {
            columns: self,
            next: 0,
        }
    }

    /// Keeps the row just written, checking that it is complete.
    pub(crate) fn commit(&mut self, written: usize) {
        if written != self.spec.len() {
            panic!(
                "plugin bug: map wrote {written} values but the table has {} columns",
                self.spec.len()
            );
        }
        self.rows += 1;
    }

    /// Drops whatever the current (rejected) row wrote.
    pub(crate) fn rollback(&mut self) {
        let rows = self.rows;
        for c in &mut self.data {
            c.truncate(rows);
        }
    }
}

/// The row being written: one value per column, in column order.
pub struct Row<'c> {
    columns: &'c mut Columns,
    next: usize,
}

impl Row<'_> {
    fn slot(&mut self, kind: ColumnType) -> &mut ColumnData {
        let i = self.next;
        let Some(spec) = self.columns.spec.get(i) else {
            panic!("plugin bug: map wrote more values than the table has columns");
        };
        if spec.kind != kind {
            panic!(
                "plugin bug: column {} is {} but map wrote a {} value",
                spec.name,
                spec.kind.as_str(),
                kind.as_str()
            );
        }
        self.next += 1;
        let rows = self.columns.rows;
        let c = &mut self.columns.data[i];
        c.push_valid(true, rows);
        c
    }

    pub(crate) fn written(&self) -> usize {
        self.next
    }

    /// Writes a string value.
    pub fn str(&mut self, value: &str) -> &mut Self {
        if let ColumnValues::Text { data, ends } = &mut self.slot(ColumnType::String).values {
            data.extend_from_slice(value.as_bytes());
            ends.push(u32::try_from(data.len()).expect("a batch's text column exceeds 4 GiB"));
        }
        self
    }

    /// Writes an int64 value.
    pub fn i64(&mut self, value: i64) -> &mut Self {
        if let ColumnValues::Int64(v) = &mut self.slot(ColumnType::Int64).values {
            v.push(value);
        }
        self
    }

    /// Writes a float64 value.
    pub fn f64(&mut self, value: f64) -> &mut Self {
        if let ColumnValues::Float64(v) = &mut self.slot(ColumnType::Float64).values {
            v.push(value);
        }
        self
    }

    /// Writes a bool value.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        if let ColumnValues::Boolean(v) = &mut self.slot(ColumnType::Bool).values {
            v.push(value);
        }
        self
    }

    /// Writes a timestamp (microseconds since the Unix epoch, UTC).
    pub fn timestamp_micros(&mut self, value: i64) -> &mut Self {
        if let ColumnValues::Timestamp(v) = &mut self.slot(ColumnType::Timestamp).values {
            v.push(value);
        }
        self
    }

    /// Writes a null into a nullable column.
    pub fn null(&mut self) -> &mut Self {
        let i = self.next;
        let Some(spec) = self.columns.spec.get(i) else {
            panic!("plugin bug: map wrote more values than the table has columns");
        };
        if !spec.nullable {
            panic!(
                "plugin bug: null written to non-nullable column {}",
                spec.name
            );
        }
        self.next += 1;
        let rows = self.columns.rows;
        let c = &mut self.columns.data[i];
        c.push_valid(false, rows);
        match &mut c.values {
            ColumnValues::Text { data, ends } => ends.push(data.len() as u32),
            ColumnValues::Int64(v) | ColumnValues::Timestamp(v) => v.push(0),
            ColumnValues::Float64(v) => v.push(0.0),
            ColumnValues::Boolean(v) => v.push(false),
        }
        self
    }
}
