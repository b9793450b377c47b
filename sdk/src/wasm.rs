//! The WebAssembly side: wit-bindgen bindings for the contract and the
//! adapter that exports any [`Plugin`] through them. Compiled for wasm only.

use std::marker::PhantomData;

use crate::Plugin;
use crate::columns::{ColumnData, ColumnValues};
use crate::info::ColumnType;

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit/plugin.wit",
        world: "event-plugin",
        pub_export_macro: true,
        export_macro_name: "__export_event_plugin",
        default_bindings_module: "eventsift_sdk::wasm::bindings",
    });
}

use bindings::exports::eventsift::plugin::plugin as wit;

/// Exports `P` as the contract's `plugin` interface.
pub struct Exporter<P>(PhantomData<P>);

/// Plugins have no stderr and no environment: the default panic hook would
/// call both (and trap on the first denied import). A silent hook lets a
/// panic end as the `unreachable` trap the host reports as a panic.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::panic::set_hook(Box::new(|_| {})));
}

impl<P: Plugin> wit::Guest for Exporter<P> {
    fn describe() -> wit::PluginInfo {
        quiet_panics();
        let info = P::INFO;
        wit::PluginInfo {
            name: info.name.into(),
            version: info.version.into(),
            event_type: info.event_type.into(),
            table: info.table.into(),
            columns: info
                .columns
                .iter()
                .map(|c| wit::Column {
                    name: c.name.into(),
                    kind: match c.kind {
                        ColumnType::String => wit::ColumnType::String,
                        ColumnType::Int64 => wit::ColumnType::Int64,
                        ColumnType::Float64 => wit::ColumnType::Float64,
                        ColumnType::Bool => wit::ColumnType::Bool,
                        ColumnType::Timestamp => wit::ColumnType::Timestamp,
                    },
                    nullable: c.nullable,
                    description: c.description.into(),
                })
                .collect(),
            route: info.route_parts().map(|(method, path)| wit::Route {
                method: method.into(),
                path: path.into(),
            }),
        }
    }

    fn validate(fields: String) -> Result<wit::Validated, String> {
        quiet_panics();
        crate::validate::<P>(&fields).map(|(fields, reply)| wit::Validated { fields, reply })
    }

    fn process(events: wit::Batch) -> wit::BatchResult {
        quiet_panics();
        let out = crate::process_batch::<P>(&events.data, &events.ends);
        wit::BatchResult {
            rows: out.rows,
            columns: out.columns.into_iter().map(column).collect(),
            rejected: out
                .rejected
                .into_iter()
                .map(|r| wit::Rejection {
                    index: r.index,
                    reason: r.reason,
                })
                .collect(),
        }
    }
}

fn column(c: ColumnData) -> wit::ColumnData {
    let validity = bitmap(&c.valid);
    let values = match c.values {
        ColumnValues::Text { data, ends } => {
            wit::ColumnValues::Text(wit::TextValues { data, ends })
        }
        ColumnValues::Int64(v) => wit::ColumnValues::Int64(v),
        ColumnValues::Float64(v) => wit::ColumnValues::Float64(v),
        ColumnValues::Boolean(v) => wit::ColumnValues::Boolean(v),
        ColumnValues::Timestamp(v) => wit::ColumnValues::Timestamp(v),
    };
    wit::ColumnData { values, validity }
}

/// Packs validity flags into an LSB-first bitmap; empty stays empty.
fn bitmap(valid: &[bool]) -> Vec<u8> {
    let mut bits = vec![0u8; valid.len().div_ceil(8)];
    for (i, _) in valid.iter().enumerate().filter(|(_, v)| **v) {
        bits[i / 8] |= 1 << (i % 8);
    }
    bits
}
