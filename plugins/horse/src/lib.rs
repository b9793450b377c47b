//! Horse purchases: `POST /purchase_a_horse/{speed}/{size}/{quantity}`.

use eventsift_sdk::prelude::*;

pub struct Horse;

impl Plugin for Horse {
    const INFO: Info = Info {
        name: "horse",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "purchase_horse",
        table: "horse_purchases",
        route: Some("POST /purchase_a_horse/{speed}/{size}/{quantity}"),
        columns: &[
            Column::float64("speed", "speed of the horse, >= 0"),
            Column::string("size", "small, medium or large"),
            Column::int64("quantity", "number of horses bought"),
        ],
    };

    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {
        row.f64(event.non_negative("speed")?);
        row.str(event.choice("size", &["small", "medium", "large"])?);
        row.i64(event.count("quantity")?);
        Ok("Horse Purchased!\n".into())
    }
}

eventsift_sdk::export!(Horse);

#[cfg(test)]
mod tests {
    use super::Horse;
    use eventsift_sdk::testing::{process, validate};

    fn check(fields: &str, expect: &str) {
        let got = match validate::<Horse>(fields) {
            Ok((fields, reply)) => format!("{fields} {reply:?}"),
            Err(e) => e,
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn validates() {
        check(
            r#"{"speed":"1","size":"SMALL","quantity":"1"}"#,
            r#"{"speed":1.0,"size":"small","quantity":1} "Horse Purchased!\n""#,
        );
        check(
            r#"{"speed":"2.5","size":"Medium","quantity":"3"}"#,
            r#"{"speed":2.5,"size":"medium","quantity":3} "Horse Purchased!\n""#,
        );
        check(
            r#"{"speed":"-1","size":"small","quantity":"1"}"#,
            r#"speed must be a finite number >= 0, got "-1""#,
        );
        check(
            r#"{"speed":"1","size":"pony","quantity":"1"}"#,
            r#"size must be one of small, medium, large, got "pony""#,
        );
        check(
            r#"{"speed":"nan","size":"small","quantity":"1"}"#,
            r#"speed must be a finite number >= 0, got "nan""#,
        );
    }

    #[test]
    fn processes_batches() {
        let out = process::<Horse>(&[
            r#"{"event_type":"purchase_horse","speed":1.0,"size":"large","quantity":2}"#,
            r#"{"event_type":"purchase_sword","color":"red","quantity":2}"#,
            r#"{"event_type":"purchase_horse","speed":1.0,"size":"huge","quantity":2}"#,
            r#"not json"#,
            r#"{"event_type":"purchase_horse","speed":3,"size":"small","quantity":1}"#,
        ]);
        assert_eq!(out.rows, vec![0, 4]);
        assert_eq!(out.columns[1].text(1), Some("small"));
        let reasons: Vec<_> = out
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (2, r#"size must be one of small, medium, large, got "huge""#),
                (3, "malformed event: expected a JSON object at byte 0"),
            ]
        );
    }
}
