// Seed 002's POS client behaviour against a tablewire edge: a POS terminal and a kitchen display
// (seed/pos-websocket-client.mjs, written as the seed's document describes it) get sync_state on
// connect; an order placed while connected goes over the socket and reaches both; its status
// change reaches the POS; markup in a customer or item name is refused. Then the terminal's
// connection is lost (`tw:cut`): an order placed meanwhile falls back to HTTP and still reaches
// the kitchen; one sent to the client while offline is queued; when connections work again
// (`tw:restore`) the client reconnects by itself with backoff, gets sync_state holding the HTTP
// order, and flushes its queue, which makes that order. Last, with the server stopped
// (`tw:stop`), an order falls back to HTTP, which fails, and stays local. Run by
// tests/seed_clients.rs with VITE_BACKEND_WS_URL (the terminal's, through the test's cuttable
// proxy), TW_KITCHEN_WS_URL (the kitchen's, direct), VITE_BACKEND_API_URL, TW_TENANT, TW_TOKEN.
import WebSocket from "ws";
import { Inbox, check, control, deadline, http, succeed, until } from "./lib/harness.mjs";
import { POSStore, POSWebSocketClient } from "./seed/pos-websocket-client.mjs";

const env = process.env;
const [tenant, token, apiUrl] = [env.TW_TENANT, env.TW_TOKEN, env.VITE_BACKEND_API_URL];
deadline(90000);

function app(name, wsUrl) {
  const client = new POSWebSocketClient({ wsUrl, WebSocket, name });
  const inbox = new Inbox(name);
  for (const type of ["order_created", "order_status_update", "sync_state", "error"]) {
    client.on(type, (message) => inbox.push(message));
  }
  client.connect(tenant, token);
  return { client, inbox, store: new POSStore({ client, apiUrl, token }) };
}

const order = (ref, { customer = `Guest ${ref}`, item = "Masala Dosa" } = {}) => ({
  tenantId: tenant,
  orderType: "dine-in",
  paymentMethod: "cash",
  customer: { name: customer, phone: "9876543210" },
  cart: { items: [{ name: item, price: 120, quantity: 2 }], subtotal: 240, tax: 12, total: 252 },
  status: "confirmed",
  source: "pos",
  notes: ref,
});
const createdFor = (inbox, ref) => inbox.next(`order_created for ${ref}`, (f) => f.type === "order_created" && f.order.notes === ref);
const NUMBER = /^ORD-\d{8}-\d{3,}$/;

const pos = app("POS", env.VITE_BACKEND_WS_URL);
const kitchen = app("KDS", env.TW_KITCHEN_WS_URL);
await pos.inbox.of("sync_state");
await kitchen.inbox.of("sync_state");
await until("the POS connected", () => pos.client.isConnected());

// Connected: over the socket, optimistic, then order_created to every connection.
const first = await pos.store.submitOrder(order("ws-1"));
check(first.via === "websocket" && first.order.id.startsWith("temp-"), `first submission: ${JSON.stringify(first)}`);
const made = await createdFor(pos.inbox, "ws-1");
check(NUMBER.test(made.order.orderNumber), `order number ${made.order.orderNumber}`);
check(made.order.customer.name === "Guest ws-1", `customer ${JSON.stringify(made.order.customer)}`);
const cooking = await createdFor(kitchen.inbox, "ws-1");
check(cooking.kitchenOrder.orderNumber === made.order.orderNumber && cooking.kitchenOrder.status === "pending",
  `kitchenOrder ${JSON.stringify(cooking.kitchenOrder)}`);

// The kitchen marks it ready: every connection hears of it.
for (const status of ["preparing", "ready"]) {
  const changed = await http("PATCH", `${apiUrl}/orders/${made.order.id}`, { token, body: { status, updatedBy: "kitchen-terminal-1" } });
  check(changed.status === 200, `PATCH ${status}: ${JSON.stringify(changed)}`);
  const update = await pos.inbox.next(`order_status_update ${status}`, (f) => f.type === "order_status_update" && f.status === status);
  check(update.orderNumber === made.order.orderNumber && update.updatedBy === "kitchen-terminal-1", JSON.stringify(update));
}

// Names the kitchen shows never carry markup: refused with VALIDATION_ERROR, nothing made.
for (const [ref, what] of [["markup-customer", { customer: '<img src=x onerror="alert(1)">Asha' }], ["markup-item", { item: "Dosa<script>alert(1)</script>" }]]) {
  await pos.store.submitOrder(order(ref, what));
  const refused = await pos.inbox.of("error");
  check(refused.code === "VALIDATION_ERROR" && typeof refused.message === "string", `${ref}: ${JSON.stringify(refused)}`);
}

// The terminal's connection is lost; the kitchen's is not.
await control("cut");
await until("the POS noticed it is offline", () => !pos.client.isConnected() && pos.client.reconnectAttempts >= 1);
const fallback = await pos.store.submitOrder(order("http-1"));
check(fallback.via === "http" && NUMBER.test(fallback.order.orderNumber), `HTTP fallback: ${JSON.stringify(fallback)}`);
await createdFor(kitchen.inbox, "http-1");
// Sent to the client while offline (the socket dropped between the store's check and the send).
pos.client.submitOrder(order("queued-1"));
check(pos.client.getQueuedMessageCount() === 1, `queued ${pos.client.getQueuedMessageCount()}`);

await control("restore");
const resync = await pos.inbox.next("sync_state after reconnecting", (f) => f.type === "sync_state");
check(resync.activeOrders.some((o) => o.orderNumber === fallback.order.orderNumber),
  `sync_state lacks the HTTP order: ${JSON.stringify(resync.activeOrders.map((o) => o.orderNumber))}`);
check(resync.recentOrders.some((o) => o.id === made.order.id), "sync_state lacks the first order");
const flushed = await createdFor(pos.inbox, "queued-1");
await createdFor(kitchen.inbox, "queued-1");
check(pos.client.getQueuedMessageCount() === 0, "the queue was flushed");
const numbers = [made.order.orderNumber, fallback.order.orderNumber, flushed.order.orderNumber];
check(new Set(numbers).size === 3, `three orders, three numbers: ${numbers}`);

// The server is gone: HTTP fails too, and the order stays local.
await control("stop");
await until("the POS noticed the server is gone", () => !pos.client.isConnected());
const local = await pos.store.submitOrder(order("local-1"));
check(local.via === "local", `with the server gone: ${JSON.stringify(local)}`);

pos.client.disconnect();
kitchen.client.disconnect();
succeed({ numbers, reconnected: true, local: local.order.id });
