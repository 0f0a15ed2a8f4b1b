//! Unit tests of the POS domain's pure rules: numbering per local day, the status flow,
//! rejected orders, idempotency claims and how long KV keeps them.

use super::*;
use serde_json::json;
use tablewire_schemas::{Origin, events::event, pos::*};

const DAY1: i64 = 1_736_121_600_000; // 2025-01-06T00:00:00Z
const POS: Pos = Pos::DEFAULT;

fn origin() -> Origin {
    Origin {
        edge: "e1".into(),
        conn: Some(7),
        request: None,
    }
}

fn ctx<'a>(origin: &'a Origin, key: &'a str, now: i64) -> Context<'a> {
    Context {
        now_ms: now,
        stream_seq: 1,
        message_id: "m",
        tenant: "r1",
        key,
        claims: None,
        origin,
    }
}

fn order() -> OrderInput {
    serde_json::from_value(json!({"tenantId": "r1", "orderType": "dine-in",
        "paymentMethod": "cash", "customer": {"name": "Ann", "phone": "555"},
        "cart": {"items": [{"id": "i1", "name": "Dosa", "price": 120, "quantity": 2}], "total": 240},
        "status": "confirmed", "source": "pos"}))
    .expect("order")
}

fn submit() -> Command {
    Command::Submit {
        order: order(),
        idempotency_key: None,
    }
}

fn book(state: &PosState) -> &TenantOrders {
    match state {
        PosState::Tenant(b) => b,
        PosState::Idempotency(_) => panic!("not a tenant"),
    }
}

#[test]
fn orders_are_numbered_per_day_and_reset_at_local_midnight() {
    let o = origin();
    let mut state = POS.new_state(&ctx(&o, TENANT_KEY, DAY1));
    let mut fx = Effects::default();
    for i in 0..3 {
        POS.apply(
            &mut state,
            submit(),
            &ctx(&o, TENANT_KEY, DAY1 + i),
            &mut fx,
        )
        .expect("submit");
    }
    assert_eq!(fx.events[0].value()["type"], "order_created");
    assert_eq!(
        fx.events[0].value()["order"]["orderNumber"],
        "ORD-20250106-001"
    );
    assert_eq!(
        fx.events[2].value()["order"]["orderNumber"],
        "ORD-20250106-003"
    );
    assert_eq!(fx.events[2].value()["kitchenOrder"]["status"], "pending");
    assert_eq!(
        fx.events[2].value()["kitchenOrder"]["items"][0]["name"],
        "Dosa"
    );
    // One millisecond before the next UTC midnight, then at it.
    let next_day = DAY1 + 86_400_000;
    let mut fx = Effects::default();
    POS.apply(
        &mut state,
        submit(),
        &ctx(&o, TENANT_KEY, next_day - 1),
        &mut fx,
    )
    .expect("late");
    POS.apply(
        &mut state,
        submit(),
        &ctx(&o, TENANT_KEY, next_day),
        &mut fx,
    )
    .expect("midnight");
    assert_eq!(
        fx.events[0].value()["order"]["orderNumber"],
        "ORD-20250106-004"
    );
    assert_eq!(
        fx.events[1].value()["order"]["orderNumber"],
        "ORD-20250107-001"
    );
    assert_eq!(fx.events[1].value()["order"]["id"], "order-5");
    // A clock that went back does not reuse a number of the earlier day.
    let mut fx = Effects::default();
    POS.apply(
        &mut state,
        submit(),
        &ctx(&o, TENANT_KEY, next_day - 10),
        &mut fx,
    )
    .expect("late clock");
    assert_eq!(
        fx.events[0].value()["order"]["orderNumber"],
        "ORD-20250107-002"
    );
    assert_eq!(book(&state).recent.len(), 6);
    assert_eq!(book(&state).active.len(), 6);
    assert_eq!(fx.records[0].0, record::ORDER);
    assert!(
        fx.commands.is_empty(),
        "the feed hears of the order by a notice"
    );
    assert_eq!(fx.notices[0].domain, DomainName::Events);
    assert_eq!(fx.notices[0].frame.value()["type"], event::ORDER_CREATED);
}

#[test]
fn the_tenant_time_zone_decides_the_day_and_numbers_grow_past_999() {
    // 2025-01-06T20:00Z is already the 7th at UTC+05:30.
    assert_eq!(local_day(DAY1 + 20 * 3_600_000, 330), "20250107");
    assert_eq!(local_day(DAY1 + 20 * 3_600_000, 0), "20250106");
    assert_eq!(local_day(DAY1 + 3_600_000, -300), "20250105");
    assert_eq!(order_number("20250106", 7), "ORD-20250106-007");
    assert_eq!(order_number("20250106", 1000), "ORD-20250106-1000");
}

#[test]
fn status_changes_follow_the_allowed_transitions() {
    let o = origin();
    let c = ctx(&o, TENANT_KEY, DAY1);
    let mut state = POS.new_state(&c);
    POS.apply(&mut state, submit(), &c, &mut Effects::default())
        .expect("submit");
    let change = |status| Command::UpdateStatus {
        order_id: "order-1".into(),
        status,
        updated_by: "kitchen-terminal-1".into(),
    };
    let before = state.clone();
    let err = POS
        .apply(
            &mut state,
            change(OrderStatus::Ready),
            &c,
            &mut Effects::default(),
        )
        .expect_err("skip preparing");
    assert_eq!(err.0.code, ErrorCode::Conflict);
    assert_eq!(state, before);
    let mut fx = Effects::default();
    for s in [
        OrderStatus::Preparing,
        OrderStatus::Ready,
        OrderStatus::Completed,
    ] {
        POS.apply(&mut state, change(s), &c, &mut fx)
            .expect("allowed");
    }
    assert_eq!(
        fx.events[2].value(),
        json!({"type": "order_status_update", "orderId": "order-1",
               "orderNumber": "ORD-20250106-001", "status": "completed",
               "updatedBy": "kitchen-terminal-1"})
    );
    assert!(book(&state).active.is_empty());
    assert_eq!(book(&state).recent[0].status, OrderStatus::Completed);
    let err = POS
        .apply(
            &mut state,
            change(OrderStatus::Cancelled),
            &c,
            &mut Effects::default(),
        )
        .expect_err("already completed");
    assert_eq!(err.0.code, ErrorCode::Conflict);
    let unknown = Command::UpdateStatus {
        order_id: "order-9".into(),
        status: OrderStatus::Preparing,
        updated_by: "k".into(),
    };
    let err = POS
        .apply(&mut state, unknown, &c, &mut Effects::default())
        .expect_err("unknown");
    assert_eq!(err.0.code, ErrorCode::UnknownResource);
    assert_eq!(fx.records.len(), 3);
}

#[test]
fn invalid_orders_change_nothing() {
    let o = origin();
    let c = ctx(&o, TENANT_KEY, DAY1);
    let mut state = POS.new_state(&c);
    let before = state.clone();
    let mut fx = Effects::default();
    let mut bad = order();
    bad.cart = None;
    let err = POS
        .apply(
            &mut state,
            Command::Submit {
                order: bad,
                idempotency_key: None,
            },
            &c,
            &mut fx,
        )
        .expect_err("no cart");
    assert_eq!(err.0.code, ErrorCode::ValidationError);
    assert_eq!(state, before);
    assert_eq!(fx, Effects::default());
    let frame = POS.error_frame(&err.0, &c);
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "VALIDATION_ERROR");
    assert!(frame["message"].as_str().is_some());
}

#[test]
fn an_idempotency_key_creates_one_order_and_answers_every_repeat() {
    let (first, second) = (
        origin(),
        Origin {
            edge: "e2".into(),
            conn: None,
            request: Some("r".into()),
        },
    );
    let key = idempotency_state_key("k1");
    let submit = || Command::Submit {
        order: order(),
        idempotency_key: Some("k1".into()),
    };
    let mut claim = POS.new_state(&ctx(&first, &key, DAY1));
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&first, &key, DAY1), &mut fx)
        .expect("first");
    assert_eq!(fx.commands.len(), 1);
    let create: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
    // A repeat before the order exists waits for it.
    let mut fx2 = Effects::default();
    POS.apply(
        &mut claim,
        submit(),
        &ctx(&second, &key, DAY1 + 1),
        &mut fx2,
    )
    .expect("repeat");
    assert!(fx2.commands.is_empty() && fx2.replies.is_empty());
    // The tenant creates it and answers the claim.
    let mut book_state = POS.new_state(&ctx(&first, TENANT_KEY, DAY1));
    let mut fx3 = Effects::default();
    let emitted = Origin {
        edge: String::new(),
        conn: None,
        request: None,
    };
    POS.apply(
        &mut book_state,
        create,
        &ctx(&emitted, TENANT_KEY, DAY1 + 2),
        &mut fx3,
    )
    .expect("create");
    assert_eq!(fx3.events.len(), 1);
    assert!(
        fx3.replies.is_empty(),
        "the WebSocket sender gets the event"
    );
    let created = fx3
        .commands
        .iter()
        .find(|c| c.0 == DomainName::Pos)
        .expect("created");
    assert_eq!(created.2, key);
    let created: Command = serde_json::from_str(created.3.get()).expect("created");
    let mut fx4 = Effects::default();
    POS.apply(
        &mut claim,
        created,
        &ctx(&emitted, &key, DAY1 + 3),
        &mut fx4,
    )
    .expect("created");
    assert_eq!(fx4.replies.len(), 1);
    assert_eq!(fx4.replies[0].0, second);
    assert_eq!(fx4.replies[0].1.value(), fx3.events[0].value());
    // Later repeats are answered at once, until 24 hours have passed.
    let mut fx5 = Effects::default();
    POS.apply(
        &mut claim,
        submit(),
        &ctx(&first, &key, DAY1 + 1000),
        &mut fx5,
    )
    .expect("later");
    assert_eq!(
        fx5.replies[0].1.value()["order"]["orderNumber"],
        "ORD-20250106-001"
    );
    assert!(fx5.commands.is_empty());
    let mut fx6 = Effects::default();
    POS.apply(
        &mut claim,
        submit(),
        &ctx(&first, &key, DAY1 + IDEMPOTENCY_WINDOW_MS),
        &mut fx6,
    )
    .expect("expired");
    assert_eq!(
        fx6.commands.len(),
        1,
        "a day later the key makes a new order"
    );
}

/// A claim whose request to the book was lost (a failure between the two) does not wait
/// forever: a repeat 10 s later asks again, and the book answers a key it already made an
/// order for with that order instead of making a second.
#[test]
fn a_claim_that_never_hears_back_asks_again_and_never_makes_two_orders() {
    let (first, second) = (origin(), origin());
    let key = idempotency_state_key("lost");
    let submit = || Command::Submit {
        order: order(),
        idempotency_key: Some("lost".into()),
    };
    let emitted = Origin::default();
    let mut claim = POS.new_state(&ctx(&first, &key, DAY1));
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&first, &key, DAY1), &mut fx)
        .expect("first");
    let lost_create: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
    // A repeat soon after waits; one after ASK_AGAIN_AFTER_MS asks the book again.
    let mut fx = Effects::default();
    POS.apply(
        &mut claim,
        submit(),
        &ctx(&second, &key, DAY1 + 5_000),
        &mut fx,
    )
    .expect("repeat");
    assert!(fx.commands.is_empty(), "too soon to ask again");
    let mut fx = Effects::default();
    let late = DAY1 + 5_000 + ASK_AGAIN_AFTER_MS;
    POS.apply(&mut claim, submit(), &ctx(&second, &key, late), &mut fx)
        .expect("late repeat");
    assert_eq!(fx.commands.len(), 1, "asks the book again");
    let again: Command = serde_json::from_str(fx.commands[0].3.get()).expect("create");
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&second, &key, late + 1), &mut fx)
        .expect("another repeat");
    assert!(fx.commands.is_empty(), "asks at most once per interval");
    // The book gets the second request first (the first was lost), then, had it been only
    // late, the first: one order either way.
    let mut book = POS.new_state(&ctx(&emitted, TENANT_KEY, late));
    let mut made = Effects::default();
    POS.apply(
        &mut book,
        again,
        &ctx(&emitted, TENANT_KEY, late + 2),
        &mut made,
    )
    .expect("create");
    let mut repeat = Effects::default();
    POS.apply(
        &mut book,
        lost_create,
        &ctx(&emitted, TENANT_KEY, late + 3),
        &mut repeat,
    )
    .expect("asked twice");
    let PosState::Tenant(orders) = &book else {
        panic!("a book")
    };
    assert_eq!(orders.total, 1, "one order");
    assert!(repeat.events.is_empty() && repeat.records.is_empty());
    let created = |fx: &Effects| -> Value {
        let c = fx.commands.iter().find(|c| c.2 == key).expect("created");
        serde_json::from_str(c.3.get()).expect("json")
    };
    assert_eq!(
        created(&made)["frame"]["order"]["orderNumber"],
        created(&repeat)["frame"]["order"]["orderNumber"]
    );
    // The claim answers everyone who waited.
    let answer: Command = serde_json::from_value(created(&made)).expect("created");
    let mut fx = Effects::default();
    POS.apply(&mut claim, answer, &ctx(&emitted, &key, late + 4), &mut fx)
        .expect("created");
    assert_eq!(fx.replies.len(), 3, "the three repeats that waited");
    // A claim made a day later (the old one expired) is a new order, not the old one.
    let day_later = DAY1 + IDEMPOTENCY_WINDOW_MS;
    let mut renewed = Effects::default();
    POS.apply(
        &mut claim,
        submit(),
        &ctx(&first, &key, day_later),
        &mut renewed,
    )
    .expect("renewed");
    let create: Command = serde_json::from_str(renewed.commands[0].3.get()).expect("create");
    let mut fx = Effects::default();
    POS.apply(
        &mut book,
        create,
        &ctx(&emitted, TENANT_KEY, day_later),
        &mut fx,
    )
    .expect("create");
    let PosState::Tenant(orders) = &book else {
        panic!("a book")
    };
    assert_eq!(orders.total, 2, "a new claim makes a new order");
}

#[test]
fn a_claim_holds_for_24_hours_by_the_command_clock_and_then_expires_from_kv() {
    const MINUTE: i64 = 60_000;
    let o = origin();
    let key = idempotency_state_key("k2");
    let submit = || Command::Submit {
        order: order(),
        idempotency_key: Some("k2".into()),
    };
    // Claimed and answered at DAY1.
    let mut claim = POS.new_state(&ctx(&o, &key, DAY1));
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&o, &key, DAY1), &mut fx)
        .expect("claim");
    assert_eq!(fx.commands.len(), 1, "the first submission creates");
    let frame = json!({"type": "order_created", "order": {"id": "order-1"}});
    POS.apply(
        &mut claim,
        Command::Created {
            frame: frame.clone(),
        },
        &ctx(&o, &key, DAY1 + 5),
        &mut Effects::default(),
    )
    .expect("created");
    assert_eq!(
        POS.time_to_live(&claim, DAY1 + 5),
        Some(Duration::from_millis((IDEMPOTENCY_WINDOW_MS - 5) as u64)),
        "KV drops the claim when its 24 hours are over"
    );

    // 23 h 59 later: the same order, nothing new; the TTL still ends at DAY1 + 24 h.
    let late = DAY1 + IDEMPOTENCY_WINDOW_MS - MINUTE;
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&o, &key, late), &mut fx)
        .expect("repeat");
    assert!(fx.commands.is_empty(), "no second order at 23h59");
    assert_eq!(fx.replies.len(), 1);
    assert_eq!(fx.replies[0].1.value(), frame);
    assert_eq!(
        POS.time_to_live(&claim, late),
        Some(Duration::from_millis(MINUTE as u64))
    );

    // 24 h 01 later: a new order, and a new 24 hours for the key.
    let later = DAY1 + IDEMPOTENCY_WINDOW_MS + MINUTE;
    let mut fx = Effects::default();
    POS.apply(&mut claim, submit(), &ctx(&o, &key, later), &mut fx)
        .expect("new");
    assert_eq!(fx.commands.len(), 1, "a new order at 24h01");
    assert!(fx.replies.is_empty(), "not answered with the old order");
    let PosState::Idempotency(renewed) = &claim else {
        panic!("a claim")
    };
    assert_eq!(renewed.claimed_at, later);
    assert_eq!(renewed.frame, None);
    assert_eq!(
        POS.time_to_live(&claim, later),
        Some(Duration::from_millis(IDEMPOTENCY_WINDOW_MS as u64))
    );

    // A claim KV already dropped is a fresh one: the key makes a new order.
    let mut gone = POS.new_state(&ctx(&o, &key, later));
    let mut fx = Effects::default();
    POS.apply(&mut gone, submit(), &ctx(&o, &key, later), &mut fx)
        .expect("fresh");
    assert_eq!(fx.commands.len(), 1);

    // The tenant's book never expires.
    let book = POS.new_state(&ctx(&o, TENANT_KEY, DAY1));
    assert_eq!(POS.time_to_live(&book, DAY1), None);
}
