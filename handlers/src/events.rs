//! The events domain (seed 004): one key per tenant, the tenant's feed. It orders and numbers
//! the events the HTTP API publishes, and fans them out in seed 004's shape
//! (`{"type": "order:created", "data": {...}, "timestamp": "…Z"}`). The POS, collab and device
//! domains' events reach the same subscribers as notices ([`notify_feed`]), without passing
//! through here.

use crate::domain::{Context, Domain, Effects, Rejection, to_value};
use crate::rate::WriteRate;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tablewire_schemas::events::{
    Command, EventFrame, MAX_EVENT_NAME, Published, error_frame, is_event_name,
};
use tablewire_schemas::{Domain as DomainName, ErrorBody, ErrorCode};

/// The events domain.
#[derive(Debug, Clone, Copy)]
pub struct Events {
    /// Events one tenant's feed accepts from `POST /api/events`, across every edge and worker.
    pub tenant_rate: WriteRate,
}

/// The default rate of one tenant's `POST /api/events`.
pub const TENANT_RATE: WriteRate = WriteRate::new(100, 500);

impl Events {
    /// The events domain with the default limits.
    pub const DEFAULT: Events = Events {
        tenant_rate: TENANT_RATE,
    };
}

impl Default for Events {
    fn default() -> Self {
        Events::DEFAULT
    }
}

/// A feed's state: only how many events it carried (its events are not kept), and its rate.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedState {
    /// Events published so far.
    pub published: u64,
    /// The tenant's publishing rate: the theoretical arrival time (µs) of its next event.
    #[serde(default, rename = "rateTatUs", skip_serializing_if = "is_zero")]
    pub rate_tat_us: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Puts an event from another domain's key on its tenant's feed as a notice: straight to the
/// feed's subscribers, in the emitting key's order, without a command to the feed's key (that
/// command's JetStream round trip and the feed's write were half the cost of an accepted scan,
/// and a quarter of nats-server's work for an order). Device scans and presence, POS orders and
/// status changes, finalized collaborative orders go this way; the HTTP API's events are
/// commands to the feed.
/// `data` is the event's typed data from the emitting domain's protocol module.
pub fn notify_feed(effects: &mut Effects, ctx: &Context<'_>, name: &str, data: impl Serialize) {
    effects.notify(
        DomainName::Events,
        ctx.tenant,
        tablewire_schemas::events::FEED_KEY,
        EventFrame {
            kind: name.to_string(),
            data: to_value(data),
            timestamp: rfc3339(ctx.now_ms),
            seq: None,
        },
    );
}

/// `ms` since the Unix epoch as RFC 3339 in UTC, as seed 004 writes timestamps.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Domain for Events {
    const NAME: DomainName = DomainName::Events;
    type State = FeedState;
    type Command = Command;

    fn new_state(&self, _ctx: &Context<'_>) -> FeedState {
        FeedState::default()
    }

    fn apply(
        &self,
        state: &mut FeedState,
        command: Command,
        ctx: &Context<'_>,
        effects: &mut Effects,
    ) -> Result<(), Rejection> {
        match command {
            Command::Publish { event, data } => {
                if !is_event_name(&event) {
                    return Err(Rejection::new(
                        ErrorCode::ValidationError,
                        format!(
                            "event names look like `order:created` (at most {MAX_EVENT_NAME} bytes)"
                        ),
                    ));
                }
                // The API's events count against the restaurant's rate; an event another
                // handler emitted follows a write already admitted.
                if !ctx.origin.edge.is_empty() {
                    state.rate_tat_us = self.tenant_rate.admit(
                        state.rate_tat_us,
                        ctx.now_ms,
                        "for this restaurant",
                    )?;
                }
                state.published += 1;
                if ctx.origin.request.is_some() {
                    // `POST /api/events` is answered once the event is on the feed.
                    effects.reply(ctx, Published {});
                }
                effects.event(EventFrame {
                    kind: event,
                    data,
                    timestamp: rfc3339(ctx.now_ms),
                    seq: None,
                });
                Ok(())
            }
        }
    }

    /// Seed 004's error frame (`{"type":"error", data, timestamp}`), which the edge reads back
    /// for `POST /api/events`.
    fn error_frame(&self, error: &ErrorBody, ctx: &Context<'_>) -> Value {
        to_value(error_frame(error.clone(), rfc3339(ctx.now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tablewire_schemas::Origin;

    #[test]
    fn published_events_fan_out_in_the_seed_shape() {
        let origin = Origin {
            edge: String::new(),
            conn: None,
            request: None,
        };
        let ctx = Context {
            now_ms: 1_758_880_800_000,
            stream_seq: 1,
            message_id: "m",
            tenant: "r1",
            key: "_",
            claims: None,
            origin: &origin,
        };
        let mut state = FeedState::default();
        let mut fx = Effects::default();
        let publish = Command::Publish {
            event: "order:created".into(),
            data: json!({"order": {"id": "o1"}}),
        };
        Events::DEFAULT
            .apply(&mut state, publish, &ctx, &mut fx)
            .expect("publish");
        assert_eq!(state.published, 1);
        assert_eq!(
            fx.events[0].value(),
            json!({"type": "order:created", "data": {"order": {"id": "o1"}}, "timestamp": "2025-09-26T10:00:00.000Z"})
        );
        let bad = Command::Publish {
            event: "Order Created".into(),
            data: json!({}),
        };
        let err = Events::DEFAULT
            .apply(&mut state, bad, &ctx, &mut Effects::default())
            .expect_err("bad name");
        assert_eq!(err.0.code, ErrorCode::ValidationError);
        assert_eq!(state.published, 1, "rejections change nothing");
    }
}
