//! Host bindings for the `eventsift:plugin` contract. This is the only
//! module that calls `bindgen!`; everything else uses the types re-exported
//! from here.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "event-plugin",
});

pub use exports::eventsift::plugin::plugin::{
    Batch as WitBatch, BatchResult, Column, ColumnData, ColumnType as WitColumnType, ColumnValues,
    PluginInfo, Rejection, Route as WitRoute, TextValues, Validated as WitValidated,
};
