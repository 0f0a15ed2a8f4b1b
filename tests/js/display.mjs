// Seed 000's display flow against a tablewire edge, with the seed's own clients: its browser
// console snippet (run in Node with the `ws` package standing in for the browser's WebSocket)
// and its `wscat -c ws://…/session/test123/display` session (the real wscat, typed into), while
// the backend (the seed's "Bun server") initialises the session and posts updates with its
// Bearer secret. Every display gets initial_state, each update and its pong; `GET /state` and a
// display connecting later see what was posted; CORS answers a browser's preflight. Run by
// tests/seed_clients.rs with TW_WS and TW_HTTP (the edge's `ws://` and `http://` base, the
// seed's `localhost:8787`) and TW_TOKEN (the auth secret the seed sets with `wrangler secret`).
import WebSocket from "ws";
import { Inbox, check, deadline, http, succeed } from "./lib/harness.mjs";
import { wscat } from "./lib/wscat.mjs";

const { TW_WS: wsBase, TW_HTTP: base, TW_TOKEN: secret } = process.env;
deadline(60000);
const session = `${base}/session/test123`;

const init = await http("POST", `${session}/init`, { body: { tenantId: "org_xyz" } });
check(init.status === 200, `init: ${JSON.stringify(init)}`);

// The seed's "Using browser console" snippet, line by line as typed (the send once it is open).
globalThis.WebSocket = WebSocket;
function browser() {
  const inbox = new Inbox("browser display");
  const ws = new WebSocket(`${wsBase}/session/test123/display`);
  ws.onmessage = (e) => console.log('Received:', JSON.parse(e.data));
  ws.addEventListener("message", (e) => inbox.push(JSON.parse(e.data)));
  return { ws, inbox };
}
const page = browser();
const initial = await page.inbox.of("initial_state");
const state = initial.state;
check(state.sessionId === "test123" && state.tenantId === "org_xyz", `initial_state ${JSON.stringify(initial)}`);
check(state.currentOrder === null && Array.isArray(state.transcriptions) && Array.isArray(state.displayUpdates),
  `state ${JSON.stringify(state)}`);
check(typeof state.startedAt === "number" && typeof initial.timestamp === "number", `times ${JSON.stringify(initial)}`);
page.ws.send(JSON.stringify({ type: 'ping' }));
const pong = await page.inbox.of("pong");
check(typeof pong.timestamp === "number", `pong ${JSON.stringify(pong)}`);

// The seed's wscat session, typed into once it shows the initial state.
const terminal = wscat("wscat display", `${wsBase}/session/test123/display`);
await terminal.inbox.of("initial_state");
terminal.type('{"type":"ping"}');
await terminal.inbox.of("pong");

// The backend posts updates with its secret; every display gets each.
const post = (update, token = secret) => http("POST", `${session}/update`, { token, body: update });
const denied = await post({ type: "dish_card", displayData: {} }, "not-the-secret");
check(denied.status === 401, `a wrong secret: ${denied.status}`);
const dish = { type: "dish_card", displayData: { dish: { name: "Paneer Tikka", price: 320 } } };
check((await post(dish)).status === 200, "dish_card posted");
for (const display of [page, terminal]) {
  const update = await display.inbox.of("update");
  check(update.update.type === "dish_card" && update.update.displayData.dish.name === "Paneer Tikka",
    `update ${JSON.stringify(update)}`);
  check(typeof update.update.timestamp === "number" && typeof update.timestamp === "number", `update times ${JSON.stringify(update)}`);
}
check((await post({ type: "transcription", displayData: { text: "I'd like a paneer tikka" } })).status === 200, "transcription");
check((await post({ type: "order_summary", displayData: { items: [{ name: "Paneer Tikka", quantity: 1 }], total: 320 } })).status === 200,
  "order_summary");
for (const display of [page, terminal]) {
  await display.inbox.next("the transcription", (f) => f.type === "update" && f.update.type === "transcription");
  await display.inbox.next("the order summary", (f) => f.type === "update" && f.update.type === "order_summary");
}

// The state persists: GET /state and a display that connects now see all of it.
const read = await http("GET", `${session}/state`, { headers: { Origin: "https://display.example" } });
check(read.status === 200 && read.headers.get("access-control-allow-origin"), `state read: ${read.status}`);
const kept = read.body;
check(kept.transcriptions.length === 1 && kept.displayUpdates.length === 3 && kept.currentOrder?.total === 320,
  `state ${JSON.stringify(kept)}`);
const reloaded = browser();
const again = await reloaded.inbox.of("initial_state");
check(JSON.stringify(again.state.displayUpdates) === JSON.stringify(kept.displayUpdates), "initial_state after a reload");

// A browser on another origin may post (the preflight the seed's CORS support answers).
const preflight = await fetch(`${session}/update`, {
  method: "OPTIONS",
  headers: { Origin: "https://display.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type" },
});
check(preflight.ok && /authorization/i.test(preflight.headers.get("access-control-allow-headers") ?? ""),
  `preflight ${preflight.status}`);

terminal.stop();
page.ws.close();
reloaded.ws.close();
succeed({ displayUpdates: kept.displayUpdates.length, transcriptions: kept.transcriptions.length });
