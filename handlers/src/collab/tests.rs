//! Unit tests of the collab domain's pure rules: every message type, splits, rejections.

use super::*;
use serde_json::{Value, json};
use tablewire_schemas::{Claims, Origin};

const T0: i64 = 1_700_000_000_000;

fn origin() -> Origin {
    Origin {
        edge: "e1".into(),
        conn: Some(1),
        request: None,
    }
}

struct Room {
    domain: Collab,
    stored: RoomState,
    now: i64,
    claims: Option<Claims>,
    origin: Origin,
}

impl Room {
    fn new() -> Room {
        Room::with(Settings::default())
    }

    fn with(settings: Settings) -> Room {
        Room {
            domain: Collab {
                settings,
                webhook: None,
            },
            stored: RoomState::new("r1", "room1", T0),
            now: T0,
            claims: None,
            origin: origin(),
        }
    }

    fn run(&mut self, command: Command) -> Result<Effects, Rejection> {
        self.now += 10;
        let ctx = Context {
            now_ms: self.now,
            stream_seq: 1,
            message_id: "m",
            tenant: "r1",
            key: "room1",
            claims: self.claims.as_ref(),
            origin: &self.origin,
        };
        let mut fx = Effects::default();
        let before = self.stored.clone();
        let result = self.domain.apply(&mut self.stored, command, &ctx, &mut fx);
        if result.is_err() {
            assert_eq!(
                self.stored, before,
                "a rejection leaves the state unchanged"
            );
            assert_eq!(fx, Effects::default(), "a rejection has no effects");
        }
        // Whatever goes to clients, SQL or the webhook carries the order, never the room's
        // internal limiter.
        let sent: Vec<String> = fx
            .events
            .iter()
            .chain(fx.replies.iter().map(|(_, frame)| frame))
            .map(|frame| frame.get().to_string())
            .chain(fx.records.iter().map(|(_, data)| data.get().to_string()))
            .collect();
        for text in sent {
            assert!(!text.contains("rateTatUs"), "internal field sent: {text}");
        }
        result.map(|()| fx)
    }

    fn send(&mut self, message: Value) -> Result<Effects, Rejection> {
        let message: ClientMessage = serde_json::from_value(message).expect("client message");
        self.run(Command::Client { message })
    }

    fn ok(&mut self, message: Value) -> Effects {
        self.send(message).expect("accepted")
    }

    fn code(&mut self, message: Value) -> ErrorCode {
        self.send(message).expect_err("rejected").0.code
    }

    fn join(&mut self, who: &str) -> Effects {
        self.ok(json!({"type": "join", "participantId": who, "participantName": format!(" {who} name\u{7} "),
                       "timestamp": 1, "data": {"circleId": "circle_1", "tenantId": "forged", "phone": "99"}}))
    }

    fn add(&mut self, who: &str, price: u64, quantity: u32) -> String {
        let fx = self.ok(json!({"type": "add_item", "participantId": who, "data": {
            "dishName": "Biryani", "dishType": "non-veg", "quantity": quantity, "price": price}}));
        fx.events[0].value()["data"]["item"]["id"]
            .as_str()
            .expect("item id")
            .to_string()
    }

    fn split(&mut self, data: Value) -> Result<Effects, Rejection> {
        self.send(json!({"type": "update_split", "participantId": "a", "data": data}))
    }

    fn shares(&self) -> Vec<(String, u64)> {
        self.stored
            .order
            .splits
            .iter()
            .map(|s| (s.participant_id.clone(), s.amount))
            .collect()
    }
}

fn share(id: &str, amount: u64) -> (String, u64) {
    (id.to_string(), amount)
}

fn customer_token() -> Claims {
    Claims {
        sub: "c".into(),
        tenant: Some("r1".into()),
        role: Some("customer".into()),
        exp: u64::MAX,
        iat: None,
    }
}

#[test]
fn join_makes_the_first_participant_initiator_and_answers_sync() {
    let mut room = Room::new();
    room.claims = Some(customer_token());
    let fx = room.join("a");
    assert_eq!(room.stored.order.initiated_by.as_deref(), Some("a"));
    assert_eq!(room.stored.order.circle_id.as_deref(), Some("circle_1"));
    assert_eq!(
        room.stored.order.tenant_id, "r1",
        "with a token, the tenant shown is the token's, not the message's"
    );
    assert_eq!(
        room.stored.order.participants[0].participant_name, "a name",
        "sanitised"
    );
    assert_eq!(fx.replies.len(), 1);
    assert_eq!(fx.replies[0].1.value()["type"], "sync");
    assert_eq!(fx.replies[0].1.value()["data"]["sessionId"], "room1");
    assert_eq!(fx.events[0].value()["type"], "participant_joined");
    assert_eq!(fx.events[0].value()["participantId"], "a");
    assert_eq!(
        fx.events[0].value()["data"]["participants"][0]["participantId"],
        "a"
    );
    room.join("b");
    assert_eq!(room.stored.order.initiated_by.as_deref(), Some("a"));
    assert_eq!(room.stored.order.participants.len(), 2);
    room.join("b");
    assert_eq!(
        room.stored.order.participants.len(),
        2,
        "joining again is not a new participant"
    );
}

#[test]
fn items_get_ids_and_totals_follow_every_change() {
    let mut room = Room::new();
    room.join("a");
    let fx = room.ok(
        json!({"type": "add_item", "participantId": "a", "participantName": "A",
        "data": {"dishName": "  Chicken\u{0} Biryani ", "dishType": "non-veg", "quantity": 2,
                 "price": 299, "customization": "Extra spicy\n", "unknown": 1}}),
    );
    let frame = &fx.events[0].value();
    assert_eq!(frame["type"], "item_added");
    assert_eq!(frame["data"]["item"]["id"], "item_1");
    assert_eq!(frame["data"]["item"]["dishName"], "Chicken Biryani");
    assert_eq!(frame["data"]["item"]["customization"], "Extra spicy");
    assert_eq!(frame["data"]["orderState"]["total"], 598);
    let second = room.add("a", 150, 1);
    assert_eq!(second, "item_2");
    assert_eq!(room.stored.order.total, 748);
    let fx = room.ok(json!({"type": "update_quantity", "participantId": "a",
        "data": {"itemId": "item_2", "quantity": 3}}));
    assert_eq!(fx.events[0].value()["type"], "quantity_updated");
    assert_eq!(fx.events[0].value()["data"]["item"]["quantity"], 3);
    assert_eq!(room.stored.order.total, 598 + 450);
    let fx =
        room.ok(json!({"type": "remove_item", "participantId": "a", "data": {"itemId": "item_1"}}));
    assert_eq!(fx.events[0].value()["type"], "item_removed");
    assert_eq!(fx.events[0].value()["data"]["item"]["id"], "item_1");
    assert_eq!(room.stored.order.total, 450);
    assert_eq!(room.add("a", 10, 1), "item_3", "ids are never reused");
    assert_eq!(
        room.stored.order.total,
        room.stored
            .order
            .items
            .iter()
            .map(|i| i.price * u64::from(i.quantity))
            .sum::<u64>()
    );
}

#[test]
fn equal_split_gives_remainders_to_the_earliest_joiners() {
    let mut room = Room::new();
    for p in ["a", "b", "c"] {
        room.join(p);
    }
    room.add("b", 1000, 1);
    assert_eq!(
        room.shares(),
        vec![share("a", 334), share("b", 333), share("c", 333)]
    );
    room.add("c", 1, 1);
    assert_eq!(
        room.shares(),
        vec![share("a", 334), share("b", 334), share("c", 333)]
    );
    // c leaves but has items: still pays; a leaves without items... a has none.
    room.ok(json!({"type": "leave", "participantId": "a"}));
    assert_eq!(room.shares(), vec![share("b", 501), share("c", 500)]);
    assert_eq!(
        room.stored.order.participants.len(),
        3,
        "leaving keeps the participant"
    );
}

#[test]
fn itemized_split_charges_what_each_added() {
    let mut room = Room::new();
    for p in ["a", "b", "c"] {
        room.join(p);
    }
    room.add("a", 300, 2);
    room.add("b", 250, 1);
    let fx = room
        .split(json!({"splitType": "itemized"}))
        .expect("itemized");
    assert_eq!(fx.events[0].value()["type"], "split_updated");
    assert_eq!(fx.events[0].value()["data"]["splitType"], "itemized");
    assert_eq!(
        room.shares(),
        vec![share("a", 600), share("b", 250), share("c", 0)]
    );
    room.ok(json!({"type": "leave", "participantId": "b"}));
    assert_eq!(room.stored.order.items.len(), 2, "leaving keeps the items");
    assert_eq!(room.shares()[1], share("b", 250));
}

#[test]
fn custom_split_must_sum_to_the_total() {
    let mut room = Room::new();
    room.join("a");
    room.join("b");
    room.add("a", 500, 2);
    let bad = room
        .split(json!({"splitType": "custom", "amounts": {"a": 500, "b": 400}}))
        .expect_err("does not sum");
    assert_eq!(bad.0.code, ErrorCode::ValidationError);
    let stranger = room
        .split(json!({"splitType": "custom", "amounts": {"a": 500, "z": 500}}))
        .expect_err("not a participant");
    assert_eq!(stranger.0.code, ErrorCode::ValidationError);
    room.split(json!({"splitType": "custom", "amounts": {"a": 700, "b": 300}}))
        .expect("sums to the total");
    assert_eq!(room.shares(), vec![share("a", 700), share("b", 300)]);
    room.add("b", 1, 1);
    let err = room
        .send(json!({"type": "finalize", "participantId": "a"}))
        .expect_err("stale custom");
    assert_eq!(err.0.code, ErrorCode::Conflict);
    room.split(json!({"splitType": "equal"}))
        .expect("back to equal");
    assert_eq!(room.stored.order.custom_amounts, None);
}

#[test]
fn a_custom_split_without_amounts_is_pending_until_amounts_come() {
    let mut room = Room::new();
    room.join("a");
    room.join("b");
    room.add("a", 500, 2);
    // Seed 001's own message: no amounts.
    let fx = room
        .split(json!({"splitType": "custom"}))
        .expect("custom without amounts");
    let frame = fx.events[0].value();
    assert_eq!(frame["type"], "split_updated");
    assert_eq!(frame["data"]["splitType"], "custom");
    assert_eq!(frame["data"]["orderState"]["splits"], json!([]), "pending");
    assert!(frame["data"]["orderState"].get("customAmounts").is_none());
    let pending = room
        .send(json!({"type": "finalize", "participantId": "a"}))
        .expect_err("amounts pending");
    assert_eq!(pending.0.code, ErrorCode::Conflict);
    assert!(
        pending.0.message.contains("pending"),
        "{}",
        pending.0.message
    );
    // Amounts that do not sum are still refused when supplied.
    assert_eq!(
        room.split(json!({"splitType": "custom", "amounts": {"a": 1, "b": 1}}))
            .expect_err("not the total")
            .0
            .code,
        ErrorCode::ValidationError
    );
    // Another participant supplies them; custom again without amounts keeps them.
    room.send(json!({"type": "update_split", "participantId": "b",
        "data": {"splitType": "custom", "amounts": {"a": 600, "b": 400}}}))
        .expect("amounts");
    room.split(json!({"splitType": "custom"}))
        .expect("custom again");
    assert_eq!(room.shares(), vec![share("a", 600), share("b", 400)]);
    // The total moves: finalize waits for amounts that sum to it again.
    room.add("b", 100, 1);
    assert_eq!(
        room.code(json!({"type": "finalize", "participantId": "a"})),
        ErrorCode::Conflict
    );
    room.split(json!({"splitType": "custom", "amounts": {"a": 600, "b": 500}}))
        .expect("amounts for the new total");
    let fx = room.ok(json!({"type": "finalize", "participantId": "a"}));
    assert_eq!(
        fx.events[0].value()["data"]["orderState"]["splits"],
        json!([{"participantId": "a", "amount": 600}, {"participantId": "b", "amount": 500}])
    );
}

#[test]
fn a_tokenless_room_shows_the_tenant_its_first_join_named() {
    let mut room = Room::new();
    // No claims: an open-tenant room (the edge put the connection in tenant r1).
    let fx = room.ok(json!({"type": "join", "participantId": "a",
        "data": {"circleId": "test_circle", "tenantId": "test_tenant"}}));
    assert_eq!(fx.replies[0].1.value()["data"]["tenantId"], "test_tenant");
    assert_eq!(
        fx.events[0].value()["data"]["tenantId"],
        "test_tenant",
        "every frame shows it"
    );
    // Later joins name other tenants: the first join's stays.
    room.ok(json!({"type": "join", "participantId": "b", "data": {"tenantId": "other"}}));
    assert_eq!(room.stored.order.tenant_id, "test_tenant");
    room.add("a", 100, 1);
    let fx = room.ok(json!({"type": "finalize", "participantId": "a"}));
    assert_eq!(
        fx.records[0].1.value()["tenantId"],
        "test_tenant",
        "the order as shown"
    );
    let notice = &fx.notices[0];
    assert_eq!(
        notice.tenant, "r1",
        "the events feed is the room's own tenant's"
    );

    // A join with a token shows the token's tenant: it always wins.
    let mut room = Room::new();
    room.ok(json!({"type": "join", "participantId": "a", "data": {"tenantId": "named"}}));
    assert_eq!(room.stored.order.tenant_id, "named");
    room.claims = Some(customer_token());
    room.ok(json!({"type": "join", "participantId": "w", "data": {"tenantId": "forged"}}));
    assert_eq!(room.stored.order.tenant_id, "r1");

    // A first join naming none shows the room's tenant.
    let mut room = Room::new();
    room.ok(json!({"type": "join", "participantId": "a"}));
    assert_eq!(room.stored.order.tenant_id, "r1");
}

#[test]
fn markup_in_any_shown_text_is_refused() {
    let seed_attack = "<img src=x onerror=\"alert(1)\">Biryani";
    let join = |field: &str| {
        let mut message = json!({"type": "join", "participantId": "a", "participantName": "A",
            "data": {"circleId": "c", "tenantId": "t", "phone": "1"}});
        match field {
            "participantId" | "participantName" => message[field] = json!(seed_attack),
            _ => message["data"][field] = json!(seed_attack),
        }
        message
    };
    for field in [
        "participantId",
        "participantName",
        "circleId",
        "tenantId",
        "phone",
    ] {
        let mut room = Room::new();
        let err = room.send(join(field)).expect_err(field);
        assert_eq!(err.0.code, ErrorCode::ValidationError, "{field}");
        assert!(
            err.0.message.starts_with(field),
            "{field}: {}",
            err.0.message
        );
    }
    let mut room = Room::new();
    room.join("a");
    for field in ["dishName", "dishType", "customization"] {
        let mut data = json!({"dishName": "Biryani", "dishType": "veg", "quantity": 1,
            "price": 100, "customization": "mild"});
        data[field] = json!(seed_attack);
        let err = room
            .send(json!({"type": "add_item", "participantId": "a", "data": data}))
            .expect_err(field);
        assert_eq!(err.0.code, ErrorCode::ValidationError, "{field}");
        assert!(
            err.0.message.starts_with(field),
            "{field}: {}",
            err.0.message
        );
    }
    assert!(room.stored.order.items.is_empty());
    // Any message's sender id counts, and plain text with `&` passes.
    assert_eq!(
        room.code(json!({"type": "leave", "participantId": "<b>a</b>"})),
        ErrorCode::ValidationError
    );
    room.ok(json!({"type": "add_item", "participantId": "a", "data": {
        "dishName": "Fish & Chips", "quantity": 1, "price": 100, "customization": "\"extra\" salt"}}));
}

#[test]
fn finalize_records_announces_and_freezes_the_order() {
    let mut room = Room::new();
    room.join("a");
    room.join("b");
    room.add("b", 100, 1);
    assert_eq!(
        room.code(json!({"type": "finalize", "participantId": "b"})),
        ErrorCode::Forbidden
    );
    let fx = room.ok(json!({"type": "finalize", "participantId": "a", "participantName": "A"}));
    assert_eq!(fx.events[0].value()["type"], "order_finalized");
    assert_eq!(
        fx.events[0].value()["data"]["orderState"]["status"],
        "finalized"
    );
    assert_eq!(fx.records.len(), 1);
    assert_eq!(fx.records[0].0, RECORD_ORDER);
    assert_eq!(fx.records[0].1.value()["total"], 100);
    assert!(
        fx.commands.is_empty(),
        "the feed hears of the order by a notice"
    );
    assert_eq!(fx.notices.len(), 1);
    let notice = &fx.notices[0];
    assert_eq!(
        (notice.domain, notice.tenant.as_str(), notice.key.as_str()),
        (DomainName::Events, "r1", "_")
    );
    let frame = notice.frame.value();
    assert_eq!(frame["type"], "order:created");
    assert_eq!(frame["data"]["order"]["total"], 100);
    assert_eq!(room.stored.order.finalized_by.as_deref(), Some("a"));
    for message in [
        json!({"type": "add_item", "participantId": "a", "data": {"dishName": "x", "quantity": 1, "price": 1}}),
        json!({"type": "remove_item", "participantId": "a", "data": {"itemId": "item_1"}}),
        json!({"type": "update_quantity", "participantId": "a", "data": {"itemId": "item_1", "quantity": 2}}),
        json!({"type": "update_split", "participantId": "a", "data": {"splitType": "itemized"}}),
        json!({"type": "finalize", "participantId": "a"}),
        json!({"type": "join", "participantId": "c"}),
        json!({"type": "leave", "participantId": "b"}),
    ] {
        assert_eq!(room.code(message.clone()), ErrorCode::Conflict, "{message}");
    }
}

#[test]
fn staff_tokens_may_finalize_for_the_initiator() {
    let mut room = Room::new();
    room.join("a");
    room.join("waiter");
    room.add("a", 100, 1);
    room.claims = Some(Claims {
        sub: "w".into(),
        tenant: Some("r1".into()),
        role: Some("staff".into()),
        exp: u64::MAX,
        iat: None,
    });
    room.ok(json!({"type": "finalize", "participantId": "waiter"}));
    assert_eq!(room.stored.order.status, Status::Finalized);
}

#[test]
fn every_rejection_has_its_code() {
    let mut room = Room::new();
    assert_eq!(
        room.code(json!({"type": "add_item", "participantId": "a", "data": {"dishName": "x", "quantity": 1, "price": 1}})),
        ErrorCode::Forbidden,
        "not joined"
    );
    assert_eq!(
        room.code(json!({"type": "join", "participantId": "  "})),
        ErrorCode::ValidationError
    );
    assert_eq!(
        room.code(json!({"type": "join", "participantId": "x".repeat(200)})),
        ErrorCode::ValidationError
    );
    room.join("a");
    for (data, what) in [
        (
            json!({"dishName": " ", "quantity": 1, "price": 1}),
            "empty dish",
        ),
        (
            json!({"dishName": "x".repeat(500), "quantity": 1, "price": 1}),
            "long dish",
        ),
        (
            json!({"dishName": "x", "quantity": 0, "price": 1}),
            "quantity 0",
        ),
        (
            json!({"dishName": "x", "quantity": 100, "price": 1}),
            "quantity 100",
        ),
        (
            json!({"dishName": "x", "quantity": 1, "price": 0}),
            "price 0",
        ),
        (
            json!({"dishName": "x", "quantity": 1, "price": 100_000_000}),
            "price too high",
        ),
    ] {
        assert_eq!(
            room.code(json!({"type": "add_item", "participantId": "a", "data": data})),
            ErrorCode::ValidationError,
            "{what}"
        );
    }
    assert_eq!(
        room.code(
            json!({"type": "remove_item", "participantId": "a", "data": {"itemId": "item_9"}})
        ),
        ErrorCode::UnknownResource
    );
    room.add("a", 5, 1);
    assert_eq!(
        room.code(json!({"type": "update_quantity", "participantId": "a", "data": {"itemId": "item_1", "quantity": 0}})),
        ErrorCode::ValidationError
    );
    assert_eq!(
        room.code(json!({"type": "finalize", "participantId": "zz"})),
        ErrorCode::Forbidden
    );
    room.ok(json!({"type": "leave", "participantId": "a"}));
    assert_eq!(
        room.code(
            json!({"type": "update_split", "participantId": "a", "data": {"splitType": "equal"}})
        ),
        ErrorCode::Forbidden,
        "left participants must join again"
    );
    let mut empty = Room::new();
    empty.join("a");
    assert_eq!(
        empty.code(json!({"type": "finalize", "participantId": "a"})),
        ErrorCode::Conflict
    );
}

#[test]
fn the_room_limit_answers_with_a_retry_time() {
    let mut room = Room::with(Settings {
        room_rate: 10,
        room_burst: 3,
        ..Settings::default()
    });
    room.join("a");
    room.add("a", 1, 1);
    room.add("a", 1, 1);
    let err = room
        .send(json!({"type": "add_item", "participantId": "a", "data": {"dishName": "x", "quantity": 1, "price": 1}}))
        .expect_err("limited");
    assert_eq!(err.0.code, ErrorCode::RateLimited);
    let wait = err.0.retry_after_ms.expect("retry after");
    assert!((1..=100).contains(&wait), "{wait}");
    room.now += wait as i64;
    room.add("a", 1, 1);
    assert!(
        room.stored.rate_tat_us > room.now * 1000,
        "the limiter is kept in the stored room"
    );
}

#[test]
fn idle_rooms_are_archived_and_removed() {
    let mut room = Room::with(Settings {
        idle_timeout: Duration::from_secs(60),
        ..Settings::default()
    });
    let err = room.run(Command::Expire).expect_err("nothing to expire");
    assert_eq!(err.0.code, ErrorCode::UnknownResource);
    room.join("a");
    let err = room.run(Command::Expire).expect_err("not idle yet");
    assert_eq!(err.0.code, ErrorCode::Conflict);
    room.now += 60_000;
    let fx = room.run(Command::Expire).expect("expired");
    assert!(fx.remove);
    assert_eq!(fx.records[0].0, RECORD_ARCHIVE);
    assert_eq!(
        fx.records[0].1.value()["order"]["participants"][0]["participantId"],
        "a"
    );
}

#[test]
fn sanitize_trims_strips_and_caps() {
    assert_eq!(sanitize("  a\u{1b}[0mb\t c  ", 64), "a[0mb c");
    assert_eq!(sanitize("abcdef", 3), "abc");
    assert_eq!(sanitize("ab  cd", 3), "ab");
}

#[test]
fn the_largest_plain_room_fits_its_bound_and_finalizing_it_fits_one_message() {
    let mut room = Room::new();
    let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
    let ids: Vec<String> = (0..limit::PARTICIPANTS)
        .map(|i| format!("{i:03}{}", long('p', limit::PARTICIPANT_ID - 3)))
        .collect();
    for id in &ids {
        room.ok(json!({"type": "join", "participantId": id,
            "participantName": long('n', limit::NAME),
            "data": {"phone": long('9', limit::SHORT_FIELD)}}));
    }
    for i in 0..limit::ITEMS {
        room.ok(
            json!({"type": "add_item", "participantId": ids[i % ids.len()], "data": {
            "dishName": long('d', limit::DISH_NAME), "dishType": long('t', limit::DISH_TYPE),
            "customization": long('c', limit::CUSTOMIZATION),
            "quantity": 99, "price": limit::PRICE}}),
        );
    }
    let size = crate::domain::json_len(&room.stored);
    assert!(size <= MAX_STATE_BYTES, "{size}");
    let fx = room.ok(json!({"type": "finalize", "participantId": ids[0]}));
    let effects: usize = fx
        .events
        .iter()
        .map(|f| f.get().len())
        .chain(fx.records.iter().map(|(_, data)| data.get().len()))
        .chain(fx.notices.iter().map(|n| n.frame.get().len()))
        .sum();
    assert!(
        size + effects < 1024 * 1024 - 64 * 1024,
        "state {size} + effects {effects}"
    );
}
