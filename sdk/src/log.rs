//! Log lines for the plugin's developer (contract 0.2): shown by
//! `eventsift plugin test` and in the daemon's log, where the host tags
//! them with the plugin, its version and, inside `process`, the source
//! position of the event being mapped. The host rate-limits them; logging
//! never fails. Natively (unit tests) lines go to stderr.
//!
//! ```
//! eventsift_sdk::log::info("mapped a horse");
//! ```

use std::cell::Cell;

/// Severity of a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

thread_local! {
    /// Index in the batch of the event `process` is mapping, if any.
    static CURRENT: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Sets the event the following lines concern (the driver calls it).
pub(crate) fn set_current(index: Option<u32>) {
    CURRENT.with(|c| c.set(index));
}

/// Writes one line; inside `process`, it names the event being mapped.
pub fn write(level: Level, message: &str) {
    let event = CURRENT.with(Cell::get);
    #[cfg(target_arch = "wasm32")]
    {
        use crate::wasm::bindings::eventsift::plugin::log as wit;
        let level = match level {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        };
        wit::write(level, message, event);
    }
    #[cfg(not(target_arch = "wasm32"))]
    match event {
        Some(i) => eprintln!("[{level:?}] event {i}: {message}"),
        None => eprintln!("[{level:?}] {message}"),
    }
}

pub fn trace(message: &str) {
    write(Level::Trace, message)
}
pub fn debug(message: &str) {
    write(Level::Debug, message)
}
pub fn info(message: &str) {
    write(Level::Info, message)
}
pub fn warn(message: &str) {
    write(Level::Warn, message)
}
pub fn error(message: &str) {
    write(Level::Error, message)
}
