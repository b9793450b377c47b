//! The default route, `GET /`: an event with no fields.

use eventsift_sdk::prelude::*;

pub struct Default;

impl Plugin for Default {
    const INFO: Info = Info {
        name: "default",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "default",
        table: "default_events",
        route: Some("GET /"),
        columns: &[],
    };

    fn map(_event: &Event<'_>, _row: &mut Row<'_>) -> Result<Reply, Reject> {
        Ok("This is the default response!\n".into())
    }
}

eventsift_sdk::export!(Default);

#[cfg(test)]
mod tests {
    #[test]
    fn replies() {
        let (fields, reply) = eventsift_sdk::testing::validate::<super::Default>("{}").unwrap();
        assert_eq!(
            (fields.as_str(), reply.as_str()),
            ("{}", "This is the default response!\n")
        );
    }
}
