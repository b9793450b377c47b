//! Host bindings for the `eventsift:plugin` contract. This is the only
//! module that calls `bindgen!`; everything else uses the types re-exported
//! from here.
//!
//! It binds the current version (`wit/plugin.wit`, 0.2). Older versions the
//! host still serves (`wit/0.1.0/`) export the same `plugin` interface, so
//! their exports are called with these types too: wasmtime type-checks each
//! function against them when a plugin loads (see [`super::instance`]).

wasmtime::component::bindgen!({
    path: "../wit/plugin.wit",
    world: "event-plugin",
});

pub use self::eventsift::plugin::log::{
    Host as LogHost, Level as WitLevel, add_to_linker as add_log_to_linker,
};
pub use exports::eventsift::plugin::plugin::{
    Batch as WitBatch, BatchResult, Column, ColumnData, ColumnType as WitColumnType, ColumnValues,
    PluginInfo, Rejection, Route as WitRoute, TextValues, Validated as WitValidated,
};
