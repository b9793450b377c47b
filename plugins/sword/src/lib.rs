//! Sword purchases: `POST /purchase_a_sword/{color}/{quantity}`.

use eventsift_sdk::prelude::*;

pub struct Sword;

impl Plugin for Sword {
    const INFO: Info = Info {
        name: "sword",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "purchase_sword",
        table: "sword_purchases",
        route: Some("POST /purchase_a_sword/{color}/{quantity}"),
        columns: &[
            Column::string("color", "sword colour: letters, digits, '-' or '_'"),
            Column::int64("quantity", "number of swords bought"),
        ],
    };

    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {
        row.str(event.token("color", 64)?);
        row.i64(event.count("quantity")?);
        Ok("Sword Purchased!\n".into())
    }
}

eventsift_sdk::export!(Sword);

#[cfg(test)]
mod tests {
    use super::Sword;
    use eventsift_sdk::testing::validate;

    fn check(fields: &str, expect: &str) {
        let got = match validate::<Sword>(fields) {
            Ok((fields, reply)) => format!("{fields} {reply:?}"),
            Err(e) => e,
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn validates() {
        check(
            r#"{"color":"red","quantity":"2"}"#,
            r#"{"color":"red","quantity":2} "Sword Purchased!\n""#,
        );
        check(
            r#"{"color":"dark-red_2","quantity":0}"#,
            r#"{"color":"dark-red_2","quantity":0} "Sword Purchased!\n""#,
        );
        check(
            r#"{"color":"red","quantity":"two"}"#,
            r#"quantity must be a whole number >= 0, got "two""#,
        );
        check(
            r#"{"color":"red","quantity":"-1"}"#,
            r#"quantity must be a whole number >= 0, got "-1""#,
        );
        check(
            r#"{"color":"red;drop","quantity":"1"}"#,
            r#"color must be 1 to 64 letters, digits, '-' or '_', got "red;drop""#,
        );
        check(r#"{"quantity":"1"}"#, r#"missing field "color""#);
    }
}
