//! The eventsift plugin SDK.
//!
//! A plugin owns one event type. It declares its table and route in a
//! [`Plugin`] implementation and writes one function, [`Plugin::map`], that
//! reads the event's fields through typed getters and writes one table row:
//!
//! ```
//! use eventsift_sdk::prelude::*;
//!
//! pub struct Horse;
//!
//! impl Plugin for Horse {
//!     const INFO: Info = Info {
//!         name: "horse",
//!         version: "0.1.0",
//!         event_type: "purchase_horse",
//!         table: "horse_purchases",
//!         route: Some("POST /purchase_a_horse/{speed}/{size}/{quantity}"),
//!         columns: &[
//!             Column::float64("speed", "speed of the horse, >= 0"),
//!             Column::string("size", "small, medium or large"),
//!             Column::int64("quantity", "number of horses bought"),
//!         ],
//!     };
//!
//!     fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {
//!         row.f64(event.non_negative("speed")?);
//!         row.str(event.choice("size", &["small", "medium", "large"])?);
//!         row.i64(event.count("quantity")?);
//!         Ok("Horse Purchased!\n".into())
//!     }
//! }
//!
//! eventsift_sdk::export!(Horse);
//!
//! let (fields, reply) = eventsift_sdk::testing::validate::<Horse>(
//!     r#"{"speed": "1.5", "size": "Large", "quantity": "2"}"#).unwrap();
//! assert_eq!(fields, r#"{"speed":1.5,"size":"large","quantity":2}"#);
//! assert_eq!(reply, "Horse Purchased!\n");
//! ```
//!
//! The same code runs natively (plain `cargo test`, benchmarks) and inside
//! the WebAssembly component built for `wasm32-wasip2`; only [`export!`]
//! differs, and it expands to nothing off wasm.

mod columns;
mod driver;
mod event;
mod info;
pub mod json;
pub mod log;
mod scan;
pub mod testing;
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod wasm;

pub use columns::{ColumnData, ColumnValues, Row};
pub use driver::{BatchOutput, Rejection, process_batch, validate};
pub use event::{Event, Reject, Value};
pub use info::{Column, ColumnType, Info};

/// The reply text the API sends back for an accepted event.
pub type Reply = std::borrow::Cow<'static, str>;

/// An event-type plugin: its description and its one mapping function.
pub trait Plugin {
    /// What the plugin owns: event type, table, columns and route.
    const INFO: Info;

    /// Validates one event and writes its row, one value per column of
    /// [`Info::columns`] in order. Returns the reply text for the API caller,
    /// or a [`Reject`] naming the field and the rule it broke.
    ///
    /// Writing a value of the wrong type, too few or too many values, or a
    /// null into a non-nullable column is a bug in the plugin and panics.
    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject>;
}

/// Everything a plugin needs in scope.
pub mod prelude {
    pub use crate::{Column, ColumnType, Event, Info, Plugin, Reject, Reply, Row};
}

/// Exports a [`Plugin`] as the WebAssembly component's implementation of the
/// `eventsift:plugin` contract. Off wasm it expands to nothing, so the plugin
/// crate also builds and tests natively.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __EventsiftExport = $crate::wasm::Exporter<$plugin>;
            $crate::wasm::bindings::__export_event_plugin!(__EventsiftExport with_types_in $crate::wasm::bindings);
        };
    };
}
