//! Guild joins and leaves: `POST /guild/{action}`.

use eventsift_sdk::prelude::*;

pub struct Guild;

impl Plugin for Guild {
    const INFO: Info = Info {
        name: "guild",
        version: env!("CARGO_PKG_VERSION"),
        event_type: "guild",
        table: "guild_actions",
        route: Some("POST /guild/{action}"),
        columns: &[Column::string("action", "join or leave")],
    };

    fn map(event: &Event<'_>, row: &mut Row<'_>) -> Result<Reply, Reject> {
        let action = event.choice("action", &["join", "leave"])?;
        row.str(action);
        Ok(if action == "join" {
            "You joined the guild!\n"
        } else {
            "You left the guild!\n"
        }
        .into())
    }
}

eventsift_sdk::export!(Guild);

#[cfg(test)]
mod tests {
    use super::Guild;
    use eventsift_sdk::testing::validate;

    #[test]
    fn replies_depend_on_the_action() {
        let v = |f| validate::<Guild>(f);
        assert_eq!(
            v(r#"{"action":"JOIN"}"#).unwrap(),
            (
                r#"{"action":"join"}"#.to_owned(),
                "You joined the guild!\n".to_owned()
            )
        );
        assert_eq!(
            v(r#"{"action":"leave"}"#).unwrap().1,
            "You left the guild!\n"
        );
        assert_eq!(
            v(r#"{"action":"stay"}"#).unwrap_err(),
            r#"action must be one of join, leave, got "stay""#
        );
    }
}
