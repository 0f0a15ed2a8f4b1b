// The kitchen display (kitchen.html): the tenant's active orders by status, live from a
// PosConnection; "bump" moves an order to the next status, and every other screen of the
// tenant sees it at once. Reconnects on its own and says so in the status pill.
import { PosConnection } from "./lib/index.js";
import { edge, h, requireToken, statusIndicator, toast } from "./common.js";

const NEXT = { pending: "preparing", preparing: "ready", ready: "completed" };
const COLUMNS = ["pending", "preparing", "ready"];

const { tenant } = requireToken();
const pos = new PosConnection({ url: edge, tenantId: tenant, token: () => sessionStorage.getItem("tw.token") ?? "" });
statusIndicator(pos, document.getElementById("status"));
pos.on("error", (error) => error.kind !== "connection_lost" && toast(error.message));

const main = document.getElementById("main");
main.append(h("p", {}, `Tenant ${tenant}`));
const columns = Object.fromEntries(COLUMNS.map((status) => [status, h("div", { "data-status": status })]));
main.append(h("div", { class: "columns" }, COLUMNS.map((status) => h("section", { class: "column" }, h("h2", {}, status), columns[status]))));

async function bump(order) {
  const next = NEXT[order.status];
  if (!next) return;
  try {
    await pos.updateOrderStatus(order.orderId, next, "kitchen");
  } catch (error) {
    toast(`${order.orderNumber}: ${error.message}`);
  }
}

function render() {
  for (const column of Object.values(columns)) column.replaceChildren();
  const orders = [...pos.activeOrders.values()].sort((a, b) => (a.createdAt ?? 0) - (b.createdAt ?? 0));
  for (const order of orders) {
    const column = columns[order.status];
    if (!column) continue;
    column.append(
      h(
        "article",
        { class: "card", "data-order": order.orderId, "data-number": order.orderNumber },
        h("h3", {}, order.orderNumber),
        h("div", {}, [order.orderType, order.tableId ? `table ${order.tableId}` : null].filter(Boolean).join(" · ")),
        h("ul", {}, (order.items ?? []).map((item) => h("li", {}, `${item.quantity ?? 1} × ${item.name}`))),
        h("button", { class: "primary bump", onclick: () => bump(order) }, `→ ${NEXT[order.status]}`),
      ),
    );
  }
}

pos.on("change", render);
pos.connect();
