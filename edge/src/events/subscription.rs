//! One events connection's subscriptions (seed 004's `subscribe`/`unsubscribe`) and the check,
//! made at the edge before delivery, of whether an event matches them. Pure; used by the hub.

use serde_json::Value;
use std::collections::BTreeMap;
use tablewire_schemas::events::{Filters, MAX_SUBSCRIPTIONS, is_event_name};
use tablewire_schemas::{ErrorBody, ErrorCode};

/// Most fields one subscription may filter on.
pub const MAX_FILTERS: usize = 8;

/// An event as the hub parsed it once for all of a restaurant's connections.
#[derive(Debug, Default)]
pub struct ParsedEvent {
    /// The event name (`type`); empty when the payload had none.
    pub kind: String,
    /// Its `data`.
    pub data: Value,
}

impl ParsedEvent {
    /// Reads the name and data of an event frame; anything unreadable has an empty name.
    pub fn parse(payload: &[u8]) -> ParsedEvent {
        #[derive(serde::Deserialize)]
        struct Frame {
            #[serde(rename = "type", default)]
            kind: String,
            #[serde(default)]
            data: Value,
        }
        serde_json::from_slice::<Frame>(payload)
            .map(|f| ParsedEvent {
                kind: f.kind,
                data: f.data,
            })
            .unwrap_or_default()
    }
}

/// What one connection wants. Until its first `subscribe` it wants every event of its
/// restaurant; after that, only the events it is subscribed to, each with its filters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Subscriptions {
    explicit: bool,
    by_event: BTreeMap<String, Filters>,
}

impl Subscriptions {
    /// Subscribes to `events` with `filters` (replacing the filters of events already
    /// subscribed). Refused as a whole, changing nothing, when a name or filter is invalid or
    /// the connection would hold more than [`MAX_SUBSCRIPTIONS`].
    pub fn subscribe(
        &mut self,
        events: &[String],
        filters: Option<&Filters>,
    ) -> Result<(), ErrorBody> {
        check_names(events)?;
        let filters = filters.cloned().unwrap_or_default();
        if filters.len() > MAX_FILTERS {
            return Err(ErrorBody::with_message(
                ErrorCode::ValidationError,
                format!("at most {MAX_FILTERS} filters"),
            ));
        }
        if let Some((field, _)) = filters
            .iter()
            .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
        {
            return Err(ErrorBody::with_message(
                ErrorCode::ValidationError,
                format!("filter {field:?} must be a string, number or boolean"),
            ));
        }
        let added = events
            .iter()
            .filter(|e| !self.by_event.contains_key(*e))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if self.by_event.len() + added > MAX_SUBSCRIPTIONS {
            return Err(ErrorBody::with_message(
                ErrorCode::TooManySubscriptions,
                format!("at most {MAX_SUBSCRIPTIONS} active subscriptions per connection"),
            ));
        }
        self.explicit = true;
        for event in events {
            self.by_event.insert(event.clone(), filters.clone());
        }
        Ok(())
    }

    /// Unsubscribes from `events` (names not subscribed are ignored).
    pub fn unsubscribe(&mut self, events: &[String]) -> Result<(), ErrorBody> {
        check_names(events)?;
        self.explicit = true;
        for event in events {
            self.by_event.remove(event);
        }
        Ok(())
    }

    /// The event names subscribed to now.
    pub fn events(&self) -> Vec<String> {
        self.by_event.keys().cloned().collect()
    }

    /// Whether the connection should receive `event`.
    pub fn wants(&self, event: &ParsedEvent) -> bool {
        if !self.explicit {
            return true;
        }
        self.by_event.get(&event.kind).is_some_and(|filters| {
            filters
                .iter()
                .all(|(field, want)| field_matches(&event.data, field, want))
        })
    }
}

fn check_names(events: &[String]) -> Result<(), ErrorBody> {
    if events.is_empty() {
        return Err(ErrorBody::with_message(
            ErrorCode::ValidationError,
            "\"events\" names at least one event",
        ));
    }
    match events.iter().find(|e| !is_event_name(e)) {
        Some(bad) => Err(ErrorBody::with_message(
            ErrorCode::ValidationError,
            format!("{bad:?} is not an event name like \"order:created\""),
        )),
        None => Ok(()),
    }
}

/// Whether `data` names `want` under `field`: at its top level (`data.table_id`), in an object
/// inside it (`data.order.table_id`), or, for `x_id`, as the id of `data.x` (`data.table.id`).
fn field_matches(data: &Value, field: &str, want: &Value) -> bool {
    let equal = |v: &Value| scalar_eq(v, want);
    if data.get(field).is_some_and(equal) {
        return true;
    }
    if let Some(entity) = field.strip_suffix("_id")
        && data
            .get(entity)
            .and_then(|e| e.get("id"))
            .is_some_and(equal)
    {
        return true;
    }
    match data {
        Value::Object(map) => map
            .values()
            .any(|child| child.get(field).is_some_and(equal)),
        _ => false,
    }
}

/// Scalars compare by their text, so a table number `12` matches `"12"`.
fn scalar_eq(a: &Value, b: &Value) -> bool {
    fn text(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
    matches!((text(a), text(b)), (Some(x), Some(y)) if x == y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, data: Value) -> ParsedEvent {
        ParsedEvent {
            kind: kind.into(),
            data,
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn everything_until_the_first_subscribe_then_only_what_was_asked() {
        let mut subs = Subscriptions::default();
        assert!(subs.wants(&event("kds:update", json!({}))));
        subs.subscribe(&names(&["order:created"]), None)
            .expect("subscribe");
        assert!(subs.wants(&event("order:created", json!({}))));
        assert!(!subs.wants(&event("kds:update", json!({}))));
        subs.unsubscribe(&names(&["order:created"]))
            .expect("unsubscribe");
        assert!(
            !subs.wants(&event("order:created", json!({}))),
            "stays explicit"
        );
    }

    #[test]
    fn a_table_filter_matches_the_table_wherever_the_event_names_it() {
        let mut subs = Subscriptions::default();
        let filters: Filters = serde_json::from_value(json!({"table_id": "t7"})).expect("map");
        subs.subscribe(
            &names(&["order:created", "table:updated", "order:status"]),
            Some(&filters),
        )
        .expect("subscribe");
        for (kind, data) in [
            (
                "order:created",
                json!({"order": {"id": "o1", "table_id": "t7"}}),
            ),
            (
                "table:updated",
                json!({"table": {"id": "t7", "status": "occupied"}}),
            ),
            ("order:status", json!({"table_id": "t7", "status": "ready"})),
        ] {
            assert!(subs.wants(&event(kind, data.clone())), "{kind} {data}");
        }
        for (kind, data) in [
            (
                "order:created",
                json!({"order": {"id": "o1", "table_id": "t8"}}),
            ),
            ("table:updated", json!({"table": {"id": "t8"}})),
            ("order:status", json!({"status": "ready"})),
        ] {
            assert!(!subs.wants(&event(kind, data.clone())), "{kind} {data}");
        }
        let numeric: Filters = serde_json::from_value(json!({"number": 12})).expect("map");
        subs.subscribe(&names(&["table:updated"]), Some(&numeric))
            .expect("replace filters");
        assert!(subs.wants(&event("table:updated", json!({"table": {"number": "12"}}))));
    }

    #[test]
    fn the_eleventh_subscription_is_refused_and_changes_nothing() {
        let mut subs = Subscriptions::default();
        for i in 0..10 {
            subs.subscribe(&names(&[&format!("e:n{}", "x".repeat(i))]), None)
                .expect("within the limit");
        }
        let before = subs.clone();
        let err = subs
            .subscribe(&names(&["e:one_more"]), None)
            .expect_err("11th");
        assert_eq!(err.code, ErrorCode::TooManySubscriptions);
        assert_eq!(subs, before);
        subs.subscribe(&names(&["e:n"]), None)
            .expect("re-subscribing an active one is not a new subscription");
        for bad in [names(&[]), names(&["Order Created"])] {
            assert_eq!(
                subs.subscribe(&bad, None).expect_err("bad").code,
                ErrorCode::ValidationError
            );
        }
        let nested: Filters = serde_json::from_value(json!({"table_id": {"a": 1}})).expect("map");
        assert_eq!(
            subs.subscribe(&names(&["e:n"]), Some(&nested))
                .expect_err("object filter")
                .code,
            ErrorCode::ValidationError
        );
    }
}
