// Seed 004's clients, unchanged, against a tablewire edge: the seed's "Establishing Connection"
// (a `ws` WebSocket with an Authorization header) and its `RestaurantWebSocket` class
// (seed/restaurant-websocket.ts, verbatim: first-message `auth`, reconnect with exponential
// backoff). The class gets events of its restaurant, loses its connection (`tw:cut`: the test
// drops it and refuses new ones), reconnects with 1 s then 2 s delays, authenticates again and
// gets events again. Run by tests/seed_clients.rs with TW_URL (the seed's `ws://localhost:3001`,
// through the test's cuttable proxy), TW_TOKEN (a JWT of the restaurant) and TW_PUBLISH (the
// edge's HTTP address, where the test plays the backend posting events).
import WebSocket from "ws";
import { Inbox, check, control, deadline, fail, http, succeed, until } from "./lib/harness.mjs";
import { loadSeedClass } from "./lib/seed-ts.mjs";

const { TW_URL: url, TW_TOKEN: token, TW_PUBLISH: publishBase } = process.env;
deadline(60000);

/** The backend's side: publishes an event to the token's restaurant feed. */
async function publish(type, data) {
  const answer = await http("POST", `${publishBase}/api/events`, { token, body: { type, data } });
  check(answer.status === 200 && answer.body?.success === true, `publish ${type}: ${JSON.stringify(answer)}`);
}

// 1. The seed's "Include authentication" snippet: the token in a header (the `ws` package is
//    what has a `headers` option).
{
  const ws = new WebSocket(url, {
    headers: {
      'Authorization': `Bearer ${token}`
    }
  });
  const inbox = new Inbox("header-authenticated socket");
  ws.on("message", (data) => inbox.push(JSON.parse(data)));
  ws.on("error", (e) => fail(`header-authenticated socket: ${e.message}`));
  const connected = await inbox.of("connected");
  check(!Number.isNaN(Date.parse(connected.timestamp)), `connected.timestamp ${connected.timestamp}`);
  ws.close();
}

// 2. RestaurantWebSocket as the seed wrote it. Its `WebSocket` is the `ws` package's (the
//    browser API it uses: onopen/onmessage/onclose, readyState, WebSocket.OPEN).
globalThis.WebSocket = WebSocket;
const attempts = [];
const Recording = class extends WebSocket {
  constructor(...args) {
    super(...args);
    attempts.push(Date.now());
  }
};
globalThis.WebSocket = Recording;
const RestaurantWebSocket = await loadSeedClass(
  new URL("./seed/restaurant-websocket.ts", import.meta.url),
  "RestaurantWebSocket",
  { seedUrl: "'ws://localhost:3001'", url, prelude: "const getToken = () => process.env.TW_TOKEN;" },
);
const client = new RestaurantWebSocket();
const inbox = new Inbox("RestaurantWebSocket");
// Watch what the class handles, then let it handle it as it does.
const handle = client.handleMessage;
client.handleMessage = function (message) {
  inbox.push(message);
  return handle.call(this, message);
};
client.connect(token);
await inbox.of("connected");

await publish("order:created", { order: { id: "order-1", status: "pending", items: [], total: 2500, table_id: "T1" } });
const created = await inbox.of("order:created");
check(created.data.order.id === "order-1" && created.data.order.total === 2500, `order:created ${JSON.stringify(created)}`);
check(!Number.isNaN(Date.parse(created.timestamp)), `event timestamp ${created.timestamp}`);

// Its public `send`: a subscription with a filter, then only matching events arrive.
client.send({ type: "subscribe", events: ["order:status"], filters: { table_id: "T1" } });
const subscribed = await inbox.of("subscribed");
check(JSON.stringify(subscribed.data.events) === '["order:status"]', `subscribed ${JSON.stringify(subscribed)}`);
await publish("table:updated", { table: { id: "T1", number: "1", status: "occupied" } });
await publish("order:status", { order_id: "order-2", status: "ready", previous_status: "preparing", table_id: "T2" });
await publish("order:status", { order_id: "order-1", status: "ready", previous_status: "preparing", table_id: "T1" });
const status = await inbox.of("order:status");
check(status.data.order_id === "order-1", `the filter let through ${JSON.stringify(status)}`);
check(!inbox.frames.some((f) => f.type === "table:updated"), "an unsubscribed event arrived");

// 3. The connection is lost and new ones are refused: the class retries after 1 s, then 2 s
//    (1000 * 2^attempts). Once the second retry is scheduled, connections work again.
const before = attempts.length;
await control("cut");
await until("two failed reconnects", () => client.reconnectAttempts >= 2 && attempts.length >= before + 1);
await control("restore");
const again = await inbox.of("connected");
check(client.reconnectAttempts === 0, `reconnectAttempts ${client.reconnectAttempts} after reconnecting`);
const gaps = attempts.slice(before).map((t, i, all) => (i === 0 ? null : t - all[i - 1])).slice(1);
// Timers never fire early (a few ms of clock rounding aside): each retry waits at least its delay.
check(gaps.length >= 1 && gaps[0] >= 1990, `the second retry came ${gaps[0]} ms after the first (2000 expected)`);
await publish("payment:processed", { payment: { id: "pay-1", order_id: "order-1", amount: 2500, method: "card", status: "completed" } });
const paid = await inbox.of("payment:processed");
check(paid.data.payment.id === "pay-1", `after reconnecting: ${JSON.stringify(paid)}`);

succeed({ connects: attempts.length, gaps, reconnected: again.timestamp });
