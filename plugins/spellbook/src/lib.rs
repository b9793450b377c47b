//! Spellbook purchases: `POST /purchase_a_spellbook/{school}/{quantity}`.
//! The example of a new event type dropped into a running daemon.

use eventsift_sdk::prelude::*;

pub struct Spellbook;

impl Plugin for Spellbook {
    const INFO: Info = Info {
        name: "spellbook",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "purchase_spellbook",
        table: "spellbook_purchases",
        route: Some("POST /purchase_a_spellbook/{school}/{quantity}"),
        columns: &[
            Column::string("school", "fire, ice, arcane or nature"),
            Column::int64("quantity", "number of spellbooks bought"),
        ],
    };

    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {
        row.str(event.choice("school", &["fire", "ice", "arcane", "nature"])?);
        row.i64(event.count("quantity")?);
        Ok("Spellbook Purchased!\n".into())
    }
}

eventsift_sdk::export!(Spellbook);

#[cfg(test)]
mod tests {
    #[test]
    fn validates() {
        let v = eventsift_sdk::testing::validate::<super::Spellbook>;
        assert_eq!(
            v(r#"{"school":"Fire","quantity":"2"}"#).unwrap().0,
            r#"{"school":"fire","quantity":2}"#
        );
        assert_eq!(
            v(r#"{"school":"dark","quantity":"2"}"#).unwrap_err(),
            r#"school must be one of fire, ice, arcane, nature, got "dark""#
        );
    }
}
