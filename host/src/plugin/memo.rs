//! A bounded memo of `validate` results for the API's plugin routes.
//!
//! A plugin imports nothing (every import traps), so it sees no clock, no
//! randomness and no I/O, and the host picks its instances arbitrarily: the
//! contract therefore treats `validate` as a function of its input, and the
//! host may answer a repeated input from memory. Route parameters repeat a
//! lot (`/purchase_a_sword/red/1`), and a Wasm call costs about 1.6 µs
//! against 0.1 µs for a hit (docs/BENCHMARKS.md).
//!
//! Direct-mapped: a slot per hash, the newest input wins; at most
//! [`SLOTS`] inputs of at most [`MAX_INPUT`] bytes. Faults are never
//! memoized (a deadline may pass under load and not otherwise). The memo
//! lives in its [`super::LoadedPlugin`], so a new version starts empty.

use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use super::Validated;

/// Slots of the memo.
pub const SLOTS: usize = 512;
/// Longer inputs are not memoized.
pub const MAX_INPUT: usize = 256;
/// Results with longer text (fields and reply, or the reason) are not
/// memoized: the memo holds at most `SLOTS * (MAX_INPUT + MAX_OUTPUT)` bytes.
pub const MAX_OUTPUT: usize = 4 << 10;

pub struct ValidateMemo {
    /// Randomly keyed: crafted inputs cannot aim at one slot.
    keys: RandomState,
    slots: Box<[Mutex<Option<(Box<str>, Validated)>>]>,
}

impl Default for ValidateMemo {
    fn default() -> Self {
        ValidateMemo {
            keys: RandomState::new(),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl ValidateMemo {
    fn slot(&self, input: &str) -> &Mutex<Option<(Box<str>, Validated)>> {
        &self.slots[self.keys.hash_one(input) as usize % SLOTS]
    }

    /// The memoized result for `input`, if any.
    pub fn get(&self, input: &str) -> Option<Validated> {
        if input.len() > MAX_INPUT {
            return None;
        }
        let slot = self.slot(input).lock().unwrap_or_else(|p| p.into_inner());
        match &*slot {
            Some((key, result)) if **key == *input => Some(result.clone()),
            _ => None,
        }
    }

    /// Remembers `result` for `input` (replacing the slot's previous input).
    pub fn put(&self, input: &str, result: &Validated) {
        let output = match result {
            Validated::Accepted { fields, reply } => fields.len() + reply.len(),
            Validated::Rejected(reason) => reason.len(),
        };
        if input.len() > MAX_INPUT || output > MAX_OUTPUT {
            return;
        }
        *self.slot(input).lock().unwrap_or_else(|p| p.into_inner()) =
            Some((input.into(), result.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_bounded_inputs_and_replaces_slots() {
        let memo = ValidateMemo::default();
        let ok = Validated::Accepted {
            fields: r#"{"color":"red"}"#.into(),
            reply: "ok".into(),
        };
        assert_eq!(memo.get("a"), None);
        memo.put("a", &ok);
        assert_eq!(memo.get("a"), Some(ok.clone()));
        assert_eq!(memo.get("b"), None);
        let long = "x".repeat(MAX_INPUT + 1);
        memo.put(&long, &ok);
        assert_eq!(memo.get(&long), None);
        // More inputs than slots: every answer is still the right one.
        for i in 0..4 * SLOTS {
            memo.put(&i.to_string(), &Validated::Rejected(i.to_string()));
        }
        for i in 0..4 * SLOTS {
            if let Some(v) = memo.get(&i.to_string()) {
                assert_eq!(v, Validated::Rejected(i.to_string()));
            }
        }
    }
}
