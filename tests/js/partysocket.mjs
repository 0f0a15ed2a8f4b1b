// A PartyKit client, unchanged, against a tablewire edge: two PartySockets (the real
// `partysocket` npm package) join a room, edit it, finalize, and one reconnects and gets sync.
// Run by tests/collab.rs with TW_HOST (host:port), TW_ROOM and TW_TOKEN; exits 0 on success.
import { PartySocket } from "partysocket";
import WS from "ws";

const { TW_HOST: host, TW_ROOM: room, TW_TOKEN: token } = process.env;
const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail("timed out"), 20000).unref();

function open(participantId) {
  const socket = new PartySocket({
    host,
    party: "collaborative_order",
    room,
    query: { token },
    WebSocket: WS,
  });
  const frames = [];
  const waiters = [];
  socket.addEventListener("message", (event) => {
    const frame = JSON.parse(event.data);
    frames.push(frame);
    for (const w of [...waiters]) {
      const i = frames.findIndex(w.match);
      if (i >= 0) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(frames.splice(i, 1)[0]);
      }
    }
  });
  const next = (match) =>
    new Promise((resolve) => {
      const i = frames.findIndex(match);
      if (i >= 0) resolve(frames.splice(i, 1)[0]);
      else waiters.push({ match, resolve });
    });
  const send = (type, data) =>
    socket.send(
      JSON.stringify({ type, participantId, participantName: participantId.toUpperCase(), timestamp: Date.now(), data }),
    );
  return { socket, next, send, of: (type) => next((f) => f.type === type) };
}

const alice = open("tenant_alice");
const bob = open("tenant_bob");
const first = await alice.of("sync");
if (first.data.sessionId !== room) fail(`sync for ${first.data.sessionId}`);
await bob.of("sync");

alice.send("join", { circleId: "circle_js", tenantId: "ignored", phone: "1" });
await alice.next((f) => f.type === "participant_joined" && f.participantId === "tenant_alice");
bob.send("join", { circleId: "circle_js" });
await alice.next((f) => f.type === "participant_joined" && f.participantId === "tenant_bob");

alice.send("add_item", { dishName: "Chicken Biryani", dishType: "non-veg", quantity: 2, price: 299, customization: "Extra spicy" });
const added = await bob.of("item_added");
const itemId = added.data.item.id;
if (!itemId.startsWith("item_")) fail(`item id ${itemId}`);
bob.send("update_quantity", { itemId, quantity: 3 });
const updated = await alice.of("quantity_updated");
if (updated.data.orderState.total !== 897) fail(`total ${updated.data.orderState.total}`);
alice.send("update_split", { splitType: "equal" });
await bob.of("split_updated");
alice.send("finalize");
const finalized = await bob.of("order_finalized");
if (finalized.data.orderState.status !== "finalized") fail("not finalized");

// PartySocket reconnects by itself; the new connection starts with sync of the current state.
bob.socket.reconnect();
const resync = await bob.next((f) => f.type === "sync" && f.data.status === "finalized");
if (resync.data.status !== "finalized" || resync.data.total !== 897) fail(`resync ${JSON.stringify(resync.data)}`);

console.log(JSON.stringify({ ok: true, orderId: finalized.data.orderState.orderId, total: resync.data.total, pk: alice.socket.id }));
alice.socket.close();
bob.socket.close();
process.exit(0);
