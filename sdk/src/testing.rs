//! Helpers for testing a plugin natively with plain `cargo test`.

use crate::{BatchOutput, Plugin};

/// Validates one event as the API would; see [`crate::validate`].
pub fn validate<P: Plugin>(fields: &str) -> Result<(String, String), String> {
    crate::validate::<P>(fields)
}

/// Runs a batch of raw JSON events through the plugin as the writer would.
pub fn process<P: Plugin>(events: &[&str]) -> BatchOutput {
    let (data, ends) = pack(events);
    crate::process_batch::<P>(&data, &ends)
}

/// Packs events into one buffer with end offsets, the contract's batch shape.
pub fn pack<S: AsRef<[u8]>>(events: &[S]) -> (Vec<u8>, Vec<u32>) {
    let mut data = Vec::new();
    let mut ends = Vec::with_capacity(events.len());
    for e in events {
        data.extend_from_slice(e.as_ref());
        ends.push(data.len() as u32);
    }
    (data, ends)
}
