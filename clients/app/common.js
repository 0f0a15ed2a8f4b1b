// What every screen shares: the signed-in token and tenant (sessionStorage, set by the
// sign-in page index.html), the edge's own origin as the client's URL, a status indicator fed
// by a connection's state events, and small DOM helpers. Imported by each screen's script.

/** The edge: this page's origin, or `?edge=http://host:port` when the pages are served elsewhere. */
const edgeParam = new URLSearchParams(location.search).get("edge");
export const edge = edgeParam ?? location.origin;

// Links between the screens keep `?edge=`.
if (edgeParam) {
  for (const link of document.querySelectorAll('a[href^="./"]')) {
    const url = new URL(link.href);
    url.searchParams.set("edge", edgeParam);
    link.href = url.href;
  }
}

/** Where `tablewire dev` serves its dev credentials. */
export const devCredentialsUrl = edgeParam ? `${edgeParam}/app/dev.json` : "./dev.json";

export function session() {
  return {
    token: sessionStorage.getItem("tw.token") ?? "",
    tenant: sessionStorage.getItem("tw.tenant") ?? "",
  };
}

export function saveSession(token, tenant) {
  sessionStorage.setItem("tw.token", token);
  sessionStorage.setItem("tw.tenant", tenant);
}

/** The tenant a JWT names (unverified: for display and defaults only). */
export function tenantOf(token) {
  try {
    const claims = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return String(claims.tenant ?? claims.tenantId ?? claims.tenant_id ?? claims.restaurant_id ?? claims.restaurantId ?? "");
  } catch {
    return "";
  }
}

/** Sends to the sign-in page when there is no token (screens that need one). */
export function requireToken() {
  const current = session();
  if (!current.token) {
    const next = encodeURIComponent(location.pathname + location.search);
    location.href = `./index.html?next=${next}${edgeParam ? `&edge=${encodeURIComponent(edgeParam)}` : ""}`;
  }
  return current;
}

/** Shows a connection's state in `element`: connecting, live, reconnecting in n s (and how
 * often it reconnected). */
export function statusIndicator(connection, element) {
  let reconnects = 0;
  connection.on("state", ({ state, delayMs, error }) => {
    if (state === "open" && connection.stats.opened > 1) reconnects = connection.stats.opened - 1;
    const text = {
      idle: "not connected",
      connecting: "connecting…",
      open: reconnects ? `live (reconnected ${reconnects}×)` : "live",
      reconnecting: `offline — retrying in ${((delayMs ?? 0) / 1000).toFixed(1)} s${error ? ` (${error.message})` : ""}`,
      closed: "closed",
    }[state];
    element.textContent = text;
    element.dataset.state = state;
    element.dataset.reconnects = String(reconnects);
  });
}

/** Creates an element: `h("li", {class: "x"}, "text", child)`. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/** Shows a message briefly in the page's `#toast`: an error unless `kind` is "ok". */
export function toast(message, kind = "error") {
  const element = document.getElementById("toast");
  if (!element) return;
  element.textContent = message;
  element.dataset.kind = kind;
  element.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (element.hidden = true), 5000);
}

export const money = (minor) => (Number(minor ?? 0) / 100).toFixed(2);
