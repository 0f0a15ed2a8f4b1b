// permessage-deflate with Node's `ws` (issue 22): one POS socket that compresses everything it
// sends (threshold 0) and one with compression off, on the same restaurant. The first
// negotiates the extension without context takeover both ways, the second none; orders sent
// compressed, large and small, and plain reach both sockets alike. Run by tests/compression.rs
// with TW_WS (the edge's ws:// base), TW_TENANT and TW_TOKEN (a staff JWT of that tenant).
import WebSocket from "ws";
import { Inbox, check, deadline, succeed } from "./lib/harness.mjs";

const { TW_WS: base, TW_TENANT: tenant, TW_TOKEN: token } = process.env;
deadline(60000);
const url = `${base}/ws/restaurant-pos/${tenant}?token=${token}`;

function open(name, perMessageDeflate) {
  const ws = new WebSocket(url, { perMessageDeflate });
  const inbox = new Inbox(name);
  let answer;
  ws.on("upgrade", (response) => { answer = response.headers["sec-websocket-extensions"]; });
  ws.on("message", (data) => inbox.push(JSON.parse(data.toString())));
  ws.on("error", (e) => check(false, `${name}: ${e}`));
  return new Promise((resolve) => ws.on("open", () => resolve({ ws, inbox, answer })));
}

const packed = await open("compressed", { threshold: 0 });
const plain = await open("plain", false);
check(packed.ws.extensions === "permessage-deflate", `negotiated: ${packed.ws.extensions}`);
check(packed.answer === "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
  `answered: ${packed.answer}`);
check(plain.ws.extensions === "" && plain.answer === undefined, `plain negotiated: ${plain.ws.extensions}`);
for (const side of [packed, plain]) await side.inbox.of("sync_state");

const order = (ref, notes) => ({
  tenantId: tenant, orderType: "dine-in", paymentMethod: "cash",
  customer: { name: `Guest ${ref}`, phone: "9876543210" },
  cart: { items: [{ name: "Masala Dosa", price: 120, quantity: 2 }], total: 240 },
  status: "confirmed", source: "pos", notes,
});
const sends = [
  [packed, "small", "s"],
  [packed, "large", "x".repeat(400)],
  [plain, "from-plain", "p"],
];
for (const [side, ref, notes] of sends) {
  side.ws.send(JSON.stringify({ type: "submit_order", order: order(ref, notes) }));
  for (const reader of [packed, plain]) {
    const created = await reader.inbox.next(`order_created ${ref}`,
      (f) => f.type === "order_created" && f.order.customer.name === `Guest ${ref}`);
    check(created.order.notes === notes, `notes of ${ref}: ${JSON.stringify(created.order)}`);
  }
}
// A message the edge refuses: the small error frame still reads.
packed.ws.send(JSON.stringify({ type: "no_such_type" }));
await packed.inbox.of("error");
// The compressed socket opened again gets a snapshot holding all three orders.
packed.ws.close();
const again = await open("again", true);
const sync = await again.inbox.of("sync_state");
check(sync.activeOrders.length === 3, `sync_state: ${JSON.stringify(sync).slice(0, 300)}`);
succeed("ok");
