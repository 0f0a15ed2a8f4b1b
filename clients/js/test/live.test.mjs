// The client against a real `tablewire dev` (and a separate edge for the restart): a socket
// killed mid-stream resumes with nothing missing and nothing twice; an edge restarted while a
// POS queues three orders delivers exactly three; the POS HTTP fallback while the socket is
// down; a token expiring mid-session is refreshed on reconnect. tests/ts_client.rs runs this
// with TABLEWIRE_BIN set (`npm test`).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import {
  CollabConnection,
  DeviceConnection,
  DisplayConnection,
  EventsConnection,
  PosConnection,
  pushDeviceConfig,
} from "../dist/index.js";
import {
  AUTH_SECRET,
  activeOrders,
  freshTenant,
  mintToken,
  order,
  startDev,
  startEdge,
  startProxy,
  until,
} from "./support.mjs";

let dev;
before(async () => {
  dev = await startDev();
});
after(async () => {
  await dev?.stop();
});

const fast = { baseMs: 50, maxMs: 400 };

test("a display whose socket is killed mid-stream shows every update once", async () => {
  const proxy = await startProxy(Number(new URL(dev.http).port));
  const session = `resume-${Date.now()}`;
  const display = new DisplayConnection({
    url: proxy.ws,
    httpUrl: dev.http,
    sessionId: session,
    token: AUTH_SECRET, // for `update` over HTTP; the display socket itself takes none
    WebSocket,
    backoff: fast,
  });
  let opened = 0;
  display.on("state", ({ state }) => state === "open" && opened++);
  display.connect();
  await until("the first snapshot", () => display.session);
  const total = 60;
  for (let n = 1; n <= total; n++) {
    await display.update({ type: "transcription", displayData: { n } });
    // Kill the socket (no close frame) twice mid-stream; updates go on meanwhile.
    if (n === 15 || n === 40) {
      proxy.cut();
      await until("the client to notice", () => display.state !== "open");
      proxy.restore();
    }
  }
  const shown = () => display.session.displayUpdates.map((update) => update.displayData.n);
  await until("every update shown", () => shown().length >= total && display.state === "open");
  assert.deepEqual(shown(), Array.from({ length: total }, (_, i) => i + 1));
  assert.deepEqual(
    display.session.transcriptions.map((update) => update.displayData.n),
    Array.from({ length: total }, (_, i) => i + 1),
  );
  assert.ok(opened >= 3, `the socket was reopened after each cut (opened ${opened} times)`);
  display.close();
  await proxy.close();
});

test("an edge restarted while a POS queues three orders delivers exactly three", async () => {
  const tenant = freshTenant("restart");
  const edge = await startEdge(dev.natsUrl);
  const pos = new PosConnection({
    url: edge.ws,
    tenantId: tenant,
    token: () => mintToken({ tenant }),
    WebSocket,
    backoff: fast,
  });
  const errors = [];
  pos.on("error", (error) => errors.push(error.kind));
  pos.connect();
  await until("sync_state", () => pos.position !== undefined && pos.isOpen);

  await edge.stop("SIGTERM"); // drains: close 1001, then the port is gone
  await until("the POS to see the edge go", () => !pos.isOpen);
  const submitted = ["A", "B", "C"].map((name) => pos.submitOrder(order(tenant, name)));
  // The socket is down and so is the edge's HTTP: all three wait in the queue.
  await until("three queued", () => pos.queued === 3);
  await edge.start();
  const results = await Promise.all(submitted);

  assert.deepEqual(
    results.map((result) => result.order.customer.name),
    ["A", "B", "C"],
  );
  const stored = await activeOrders(dev.http, tenant); // through another edge
  assert.equal(stored.length, 3, JSON.stringify(stored));
  assert.equal(new Set(results.map((result) => result.order.id)).size, 3);
  assert.equal(pos.queued, 0);
  await until("the view to hold three orders", () => pos.activeOrders.size === 3);
  assert.ok(errors.includes("going_away"), `a drain is reported as going_away (${errors})`);
  pos.close();
  await edge.stop();
});

test("a POS whose socket is down submits over HTTP, once", async () => {
  const tenant = freshTenant("fallback");
  const proxy = await startProxy(Number(new URL(dev.http).port));
  const pos = new PosConnection({
    url: proxy.ws,
    httpUrl: dev.http,
    tenantId: tenant,
    token: () => mintToken({ tenant }),
    WebSocket,
    backoff: fast,
  });
  pos.connect();
  await until("sync_state", () => pos.position !== undefined && pos.isOpen);
  proxy.cut();
  await until("the socket to drop", () => !pos.isOpen);
  const result = await pos.submitOrder(order(tenant, "offline"));
  assert.equal(result.via, "http");
  proxy.restore();
  await until("the order in the resynced view", () => pos.activeOrders.has(result.order.id));
  assert.equal((await activeOrders(dev.http, tenant)).length, 1);
  pos.close();
  await proxy.close();
});

test("a token expiring mid-session is refreshed on reconnect", async () => {
  const tenant = freshTenant("token");
  const proxy = await startProxy(Number(new URL(dev.http).port));
  const issued = [];
  const requests = [];
  const events = new EventsConnection({
    url: proxy.ws,
    httpUrl: dev.http,
    // Short-lived tokens: each expires (past the server's 5 s leeway) within seconds.
    token: (request) => {
      requests.push(request.reason);
      const token = mintToken({ tenant, ttlSecs: 1 });
      issued.push(token);
      return token;
    },
    WebSocket,
    backoff: fast,
  });
  const received = [];
  const errors = [];
  events.onEvent((event) => received.push(event));
  events.on("error", (error) => errors.push(error.code ?? error.kind));
  events.connect();
  await until("connected", () => events.isOpen && events.stats.opened === 1);
  const first = issued[0];

  // Wait until the first token is refused by the server: it has expired.
  await until(
    "the first token to expire",
    async () => (await fetch(`${dev.http}/api/orders`, { headers: { Authorization: `Bearer ${first}` } })).status === 401,
  );
  // The same token would now be refused on a socket too (close 1008).
  const stale = new EventsConnection({ url: dev.ws, token: first, WebSocket, backoff: { baseMs: 60000 } });
  const staleErrors = [];
  stale.on("error", (error) => staleErrors.push(error.kind));
  stale.connect();
  await until("the stale token refused", () => staleErrors.includes("auth"));
  stale.close();

  proxy.cut();
  await until("the drop noticed", () => !events.isOpen);
  proxy.restore();
  await until("reconnected", () => events.isOpen && events.stats.opened === 2);
  const publisher = mintToken({ tenant, role: "service" });
  await until("an event after the reconnect", async () => {
    const response = await fetch(`${dev.http}/api/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${publisher}`, "Content-Type": "application/json" },
      body: JSON.stringify({ type: "table:updated", data: { table: { id: "T1" } } }),
    });
    assert.equal(response.status, 200);
    return received.some((event) => event.type === "table:updated");
  });
  assert.ok(issued.length >= 2 && issued.at(-1) !== first, "a new token was asked for");
  assert.ok(!errors.includes("UNAUTHORIZED") && !errors.includes("TOKEN_EXPIRED"), `errors: ${errors}`);
  events.close();
  await proxy.close();
});

test("two participants build and finalize a room; a refused command rejects with its code", async () => {
  const room = `room-${Date.now()}`;
  const open = (participantId, participantName) =>
    new CollabConnection({ url: dev.ws, room, participantId, participantName, WebSocket, backoff: fast });
  const ana = open("ana", "Ana");
  const ben = open("ben", "Ben");
  ana.connect();
  ben.connect();
  await until("both open", () => ana.isOpen && ben.isOpen);
  await ana.join();
  await ben.join();
  await ana.join(); // joining again is answered too
  await ana.addItem({ dishName: "Dosa", dishType: "main", price: 450, quantity: 2 });
  await ben.addItem({ dishName: "Lassi", dishType: "drink", price: 200, quantity: 1 });
  await ben.updateSplit({ splitType: "itemized" });
  await assert.rejects(ben.finalize(), (error) => error.kind === "server" && error.code === "FORBIDDEN");
  await ana.finalize();
  await until("both see it finalized", () => ana.order?.status === "finalized" && ben.order?.status === "finalized");
  assert.equal(ben.order.total, 1100);
  assert.deepEqual(
    ben.order.splits.map((share) => [share.participantId, share.amount]),
    [
      ["ana", 900],
      ["ben", 200],
    ],
  );
  await assert.rejects(ben.addItem({ dishName: "Tea", dishType: "drink", price: 100, quantity: 1 }), (error) => error.code === "CONFLICT");
  ana.close();
  ben.close();
});

test("a reader's scan is answered, one too soon is refused with TOO_SOON, and a pushed config arrives", async () => {
  const deviceId = `READER-${Date.now()}`;
  const reader = new DeviceConnection({ url: dev.ws, deviceId, WebSocket, backoff: fast });
  reader.connect();
  await until("open", () => reader.isOpen);
  const answer = await reader.scan("TAG-1", "door");
  assert.equal(answer.scan.tagId, "TAG-1");
  assert.equal(answer.scan.deviceId, deviceId);
  await assert.rejects(reader.scan("TAG-2"), (error) => error.code === "TOO_SOON" && error.retryAfterMs > 0);
  const admin = new DeviceConnection({
    url: dev.ws,
    deviceId: "dashboard",
    token: mintToken({ tenant: "default", role: "admin" }),
  });
  const pushed = await pushDeviceConfig(admin, deviceId, { registrationMode: true });
  assert.equal(pushed.online, true);
  await until("the config at the reader", () => reader.config?.registrationMode === true);
  reader.close();
});
