// The collaborative order room (room.html): the seed 001 flow on a phone — join a room, add
// items, change quantities, choose a split, and (the first joiner) finalize; everyone in the
// room sees each change live. `?room=` and `?name=` prefill the form; a token is optional
// where the edge has an open tenant (`tablewire dev`: demo).
import { CollabConnection } from "./lib/index.js";
import { edge, h, money, statusIndicator, toast } from "./common.js";

const params = new URLSearchParams(location.search);
const main = document.getElementById("main");
const status = document.getElementById("status");

const joinForm = h(
  "form",
  { id: "join" },
  h("label", {}, "Room ", h("input", { name: "room", required: true, value: params.get("room") ?? "table-1", size: 12 })),
  h("label", {}, "Your name ", h("input", { name: "name", required: true, value: params.get("name") ?? "", size: 12 })),
  h("button", { class: "primary", type: "submit" }, "Join"),
);
main.append(joinForm);

joinForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(joinForm);
  const name = String(data.get("name")).trim();
  const participantId = `${name.toLowerCase().replace(/[^a-z0-9]+/g, "-")}-${Math.random().toString(36).slice(2, 6)}`;
  joinForm.remove();
  openRoom(String(data.get("room")).trim(), participantId, name);
});

function openRoom(room, participantId, participantName) {
  const collab = new CollabConnection({
    url: edge,
    room,
    participantId,
    participantName,
    token: () => sessionStorage.getItem("tw.token") || undefined,
  });
  statusIndicator(collab, status);
  const act = (promise) => promise.catch((error) => toast(error.message));
  // Join on every (re)connect: joining again is harmless and brings the room's state.
  collab.on("state", ({ state }) => state === "open" && act(collab.join()));

  const view = h("div", { id: "room" });
  const addForm = h(
    "form",
    { id: "add" },
    h("input", { name: "dish", placeholder: "dish", required: true, size: 14 }),
    h("input", { name: "price", type: "number", step: "0.01", min: "0.01", placeholder: "price", required: true, size: 6 }),
    h("input", { name: "quantity", type: "number", min: 1, max: 99, value: 1, size: 3 }),
    h("button", { class: "primary", type: "submit" }, "Add"),
  );
  addForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(addForm);
    act(
      collab.addItem({
        dishName: String(data.get("dish")),
        dishType: "main",
        price: Math.round(Number(data.get("price")) * 100),
        quantity: Number(data.get("quantity")),
      }),
    );
    addForm.reset();
  });
  const split = h(
    "select",
    { id: "split", onchange: () => act(collab.updateSplit({ splitType: split.value })) },
    ["equal", "itemized"].map((type) => h("option", { value: type }, type)),
  );
  const finalize = h("button", { id: "finalize", onclick: () => act(collab.finalize()) }, "Finalize");
  main.append(h("h2", {}, `Room ${room}`), addForm, h("p", {}, "Split: ", split, " ", finalize), view);

  collab.on("change", () => {
    const order = collab.order;
    if (!order) return;
    const finalized = order.status === "finalized";
    split.value = order.splitType;
    split.disabled = finalized;
    finalize.disabled = finalized || order.initiatedBy !== participantId;
    addForm.hidden = finalized;
    const names = Object.fromEntries(order.participants.map((p) => [p.participantId, p.participantName ?? p.participantId]));
    view.replaceChildren(
      h("p", { id: "order-status", "data-status": order.status }, finalized ? "Finalized — thank you!" : "Ordering…"),
      h(
        "table",
        {},
        h(
          "tbody",
          {},
          order.items.map((item) =>
            h(
              "tr",
              { "data-item": item.id },
              h("td", {}, item.dishName),
              h("td", {}, item.addedByName ?? names[item.addedBy] ?? ""),
              h(
                "td",
                {},
                h("button", { disabled: finalized || item.quantity <= 1, onclick: () => act(collab.updateQuantity(item.id, item.quantity - 1)) }, "−"),
                ` ${item.quantity} `,
                h("button", { disabled: finalized || item.quantity >= 99, onclick: () => act(collab.updateQuantity(item.id, item.quantity + 1)) }, "+"),
              ),
              h("td", {}, money(item.subtotal)),
              h("td", {}, h("button", { disabled: finalized, onclick: () => act(collab.removeItem(item.id)) }, "remove")),
            ),
          ),
        ),
      ),
      h("p", { id: "total", class: "big" }, `Total ${money(order.total)}`),
      h("ul", { id: "splits" }, (order.splits ?? []).map((share) => h("li", {}, `${names[share.participantId] ?? share.participantId}: ${money(share.amount)}`))),
    );
  });
  collab.connect();
}
