// The customer display (display.html): what seed 000's display shows — the current order and
// the conversation's transcriptions — for the session in `?session=`, live from a
// DisplayConnection (no token: sessions are addressed by id, as in the seed).
import { DisplayConnection } from "./lib/index.js";
import { edge, h, money, statusIndicator } from "./common.js";

const sessionId = new URLSearchParams(location.search).get("session") ?? "demo";
const display = new DisplayConnection({ url: edge, sessionId });
statusIndicator(display, document.getElementById("status"));

const main = document.getElementById("main");
const order = h("section", { id: "current-order", class: "card" });
const transcriptions = h("ol", { id: "transcriptions" });
main.append(h("p", {}, `Session ${sessionId}`), h("h2", {}, "Your order"), order, h("h2", {}, "Conversation"), transcriptions);

function render() {
  const state = display.session;
  if (!state) return;
  const current = state.currentOrder ?? {};
  const items = Array.isArray(current.items) ? current.items : [];
  order.replaceChildren(
    items.length
      ? h("ul", {}, items.map((item) => h("li", {}, `${item.quantity ?? 1} × ${item.name ?? item.dishName ?? "item"}${item.price !== undefined ? ` — ${money(item.price)}` : ""}`)))
      : h("p", {}, "Nothing ordered yet."),
    current.total !== undefined ? h("p", { class: "big" }, `Total ${money(current.total)}`) : null,
  );
  transcriptions.replaceChildren(
    ...state.transcriptions.slice(-20).map((update) => h("li", {}, String(update.displayData?.text ?? JSON.stringify(update.displayData ?? {})))),
  );
}

display.on("change", render);
display.connect();
