// The core without a server: backoff bounds, seq verdicts, close-code mapping, and a
// connection driven through a scripted WebSocket (duplicates dropped, a gap reconnects for a
// fresh snapshot, a durable command sent again after a drop, token asked on every attempt).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, SeqTracker, closeError, PosConnection } from "../dist/index.js";

test("backoff grows by its factor up to the cap, with jitter within [half, whole]", () => {
  const low = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0 });
  const high = new Backoff({ baseMs: 100, maxMs: 1000, random: () => 0.999999 });
  const lows = Array.from({ length: 7 }, () => low.next());
  const highs = Array.from({ length: 7 }, () => high.next());
  assert.deepEqual(lows, [50, 100, 200, 400, 500, 500, 500]);
  assert.deepEqual(highs, [100, 200, 400, 800, 1000, 1000, 1000]);
  low.reset();
  assert.equal(low.next(), 50);
});

test("seq: next, duplicate, gap", () => {
  const seq = new SeqTracker();
  seq.snapshot(5);
  assert.deepEqual(seq.event(6), { kind: "next" });
  assert.deepEqual(seq.event(6), { kind: "duplicate" });
  assert.deepEqual(seq.event(3), { kind: "duplicate" });
  assert.deepEqual(seq.event(9), { kind: "gap", expected: 7, got: 9 });
  seq.snapshot(2);
  assert.deepEqual(seq.event(3), { kind: "next" });
});

test("close codes map to error kinds", () => {
  assert.equal(closeError(1008, "").kind, "auth");
  assert.equal(closeError(1009, "").kind, "too_big");
  assert.equal(closeError(1001, "").kind, "going_away");
  assert.equal(closeError(1006, "").kind, "connection_lost");
  assert.equal(closeError(1000, ""), undefined);
});

/** A WebSocket whose server side the test scripts. */
class ScriptedSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.all.push(this);
    queueMicrotask(() => {
      this.readyState = 1;
      this.onopen?.({});
    });
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000, reason = "") {
    if (this.readyState === 3) return;
    this.readyState = 3;
    queueMicrotask(() => this.onclose?.({ code, reason }));
  }
  /** The server sends `frame`. */
  push(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));
const latest = () => ScriptedSocket.all.at(-1);

test("a connection drops repeats, resyncs on a gap, resends a durable command, and asks for a token each time", async () => {
  ScriptedSocket.all = [];
  let tokens = 0;
  const pos = new PosConnection({
    url: "ws://edge.invalid",
    tenantId: "t1",
    token: () => `token-${++tokens}`,
    WebSocket: ScriptedSocket,
    httpFallback: false,
    backoff: { baseMs: 1, maxMs: 1 },
  });
  const seen = [];
  pos.on("frame", (frame) => seen.push(frame.seq));
  pos.connect();
  await tick();
  assert.match(latest().url, /\/ws\/restaurant-pos\/t1\?token=token-1$/);
  latest().push({ type: "sync_state", activeOrders: [], recentOrders: [], seq: 5 });
  const created = (n, key) => ({
    type: "order_created",
    seq: n,
    order: { id: `order-${n}`, idempotencyKey: key },
    kitchenOrder: { orderId: `order-${n}`, status: "pending" },
  });
  latest().push(created(6, "a"));
  latest().push(created(6, "a"));
  assert.deepEqual(seen, [5, 6]);
  assert.equal(pos.stats.duplicatesDropped, 1);

  // A durable command whose socket dies before the answer is sent again on the next socket.
  const submitted = pos.submitOrder({ tenantId: "t1" }, { idempotencyKey: "k" });
  await tick();
  const first = latest();
  assert.equal(first.sent.at(-1).idempotencyKey, "k");
  first.close(1006);
  await until(() => ScriptedSocket.all.length === 2 && latest().readyState === 1);
  assert.match(latest().url, /token=token-2$/);
  latest().push({ type: "sync_state", activeOrders: [], recentOrders: [], seq: 6 });
  await tick();
  assert.equal(latest().sent.at(-1).idempotencyKey, "k");
  latest().push(created(7, "k"));
  assert.equal((await submitted).order.id, "order-7");

  // A gap: the frame is not delivered, nor any after it on that socket, and the client
  // reconnects for a snapshot.
  latest().push(created(9, "x"));
  latest().push(created(10, "y"));
  assert.deepEqual(seen, [5, 6, 6, 7]);
  await until(() => ScriptedSocket.all.length === 3);
  assert.equal(pos.stats.gaps, 1);
  pos.close();
  assert.equal(pos.state, "closed");
});

async function until(check) {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  assert.ok(check(), "condition never became true");
}

test("a command whose socket closes with 1009 fails as too_big and is not sent again", async () => {
  ScriptedSocket.all = [];
  const pos = new PosConnection({
    url: "ws://edge.invalid",
    tenantId: "t1",
    token: "t",
    WebSocket: ScriptedSocket,
    httpFallback: false,
    backoff: { baseMs: 1, maxMs: 1 },
  });
  pos.connect();
  await until(() => latest()?.readyState === 1);
  latest().push({ type: "sync_state", activeOrders: [], recentOrders: [], seq: 0 });
  const submitted = pos.submitOrder({ tenantId: "t1", notes: "x".repeat(100) }, { idempotencyKey: "big" });
  const outcome = submitted.then(
    () => "resolved",
    (error) => error.kind,
  );
  await until(() => latest().sent.length === 1);
  latest().close(1009, "too big");
  assert.equal(await outcome, "too_big");
  await until(() => ScriptedSocket.all.length === 2 && latest().readyState === 1);
  await tick();
  assert.equal(latest().sent.length, 0, "the too-big command was sent again");
  assert.equal(pos.queued, 0);
  pos.close();
});

test("a socket that stays silent past two keepalive intervals is dropped and reopened", async () => {
  ScriptedSocket.all = [];
  const errors = [];
  const pos = new PosConnection({
    url: "ws://edge.invalid",
    tenantId: "t1",
    token: "t",
    WebSocket: ScriptedSocket,
    httpFallback: false,
    keepaliveMs: 20,
    backoff: { baseMs: 1, maxMs: 1 },
  });
  pos.on("error", (error) => errors.push(error.closeCode));
  pos.connect();
  await until(() => latest()?.readyState === 1);
  const first = latest();
  await until(() => ScriptedSocket.all.length >= 2);
  assert.ok(first.sent.some((frame) => frame.type === "ping"), "it pinged before giving up");
  assert.equal(first.readyState, 3, "the silent socket was closed");
  assert.ok(errors.includes(4003));
  pos.close();
});

test("orders unanswered when the page went away are sent again by the next connection with the same storage", async () => {
  ScriptedSocket.all = [];
  const saved = new Map();
  const storage = { getItem: (key) => saved.get(key) ?? null, setItem: (key, value) => saved.set(key, value) };
  const options = { url: "ws://edge.invalid", tenantId: "t1", token: "t", WebSocket: ScriptedSocket, httpFallback: false, storage };
  const before = new PosConnection(options); // never connects: offline all along
  before.submitOrder({ tenantId: "t1", customer: { name: "Kept" } }, { idempotencyKey: "kept" }).catch(() => undefined);
  assert.equal(JSON.parse(saved.get("tablewire.pos.t1.unanswered")).length, 1);

  const after = new PosConnection(options); // the page reloaded
  after.connect();
  await until(() => latest()?.readyState === 1 && latest().sent.length > 0);
  assert.equal(latest().sent[0].type, "submit_order");
  assert.equal(latest().sent[0].idempotencyKey, "kept");
  latest().push({ type: "order_created", seq: 1, order: { id: "order-1", idempotencyKey: "kept" }, kitchenOrder: { orderId: "order-1" } });
  await until(() => after.queued === 0);
  await tick();
  assert.deepEqual(JSON.parse(saved.get("tablewire.pos.t1.unanswered")), []);
  after.close();
  before.close();
});
