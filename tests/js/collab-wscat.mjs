// Seed 001's wscat session against `tablewire dev`, with the real `wscat` and the seed README's
// own messages, tokenless as the seed's client is (dev puts it in its open tenant): `sync` on
// connect; the seed's `join` answered with `sync` echoing its `tenantId`; the seed's `add_item`
// and `update_split {"splitType":"custom"}` (amounts pending, so `finalize` is refused until
// amounts come); markup in a dish name refused; a second session sees the room as the first
// left it. Run by tests/seed_clients.rs with TW_URL (the seed's
// `ws://localhost:1999/parties/collaborative_order/test_session_123`).
import { check, deadline, succeed } from "./lib/harness.mjs";
import { wscat } from "./lib/wscat.mjs";

const { TW_URL: url } = process.env;
deadline(60000);

const from = '"participantId": "tenant_9876543210", "participantName": "John Doe", "timestamp": 1234567890';
const join = `{"type": "join", ${from}, "data": {"circleId": "test_circle", "tenantId": "test_tenant", "phone": "1234567890"}}`;
const add = `{"type": "add_item", ${from}, "data": {"dishName": "Chicken Biryani", "dishType": "non-veg", "quantity": 2, "price": 299, "customization": "Extra spicy"}}`;
const attack = `{"type": "add_item", ${from}, "data": {"dishName": "<img src=x onerror=\\"alert(1)\\">Biryani", "quantity": 1, "price": 299}}`;
const split = `{"type": "update_split", ${from}, "data": {"splitType": "custom"}}`;
const finalize = `{"type": "finalize", ${from}}`;
const session = wscat("session 1", url, { execute: [join, add, attack, split, finalize] });

const first = await session.inbox.of("sync");
check(first.data.sessionId === "test_session_123", `sync on connect ${JSON.stringify(first)}`);
const echoed = await session.inbox.of("sync");
check(echoed.data.tenantId === "test_tenant" && echoed.data.circleId === "test_circle", `join's sync ${JSON.stringify(echoed.data)}`);
const joined = await session.inbox.of("participant_joined");
check(joined.participantName === "John Doe" && joined.data.initiatedBy === "tenant_9876543210", JSON.stringify(joined));
const added = await session.inbox.of("item_added");
check(added.data.item.dishName === "Chicken Biryani" && added.data.orderState.total === 598, JSON.stringify(added.data));
const refused = await session.inbox.next("the markup refused", (f) => f.type === "error" && f.code === "VALIDATION_ERROR");
check(/dishName/.test(refused.message), `markup: ${JSON.stringify(refused)}`);
const custom = await session.inbox.of("split_updated");
check(custom.data.splitType === "custom" && custom.data.orderState.splits.length === 0, `split ${JSON.stringify(custom.data)}`);
const pending = await session.inbox.next("finalize refused", (f) => f.type === "error" && f.code === "CONFLICT");
check(/pending/.test(pending.message), `finalize: ${JSON.stringify(pending)}`);

const later = wscat("session 2", url, {
  execute: ['{"type": "join", "participantId": "tenant_1234567890", "participantName": "Jane Smith", "timestamp": 1234567890}'],
});
const state = (await later.inbox.of("sync")).data;
check(state.tenantId === "test_tenant" && state.items.length === 1 && state.splitType === "custom", `room ${JSON.stringify(state)}`);
const jane = await session.inbox.next("Jane joins", (f) => f.type === "participant_joined" && f.participantName === "Jane Smith");
check(jane.data.participants.length === 2 && jane.data.tenantId === "test_tenant", JSON.stringify(jane.data));

session.stop();
later.stop();
succeed({ tenantId: state.tenantId, items: state.items.length });
