// The device dashboard (devices.html): readers online or offline with when they were last
// seen, and scans as they happen, from the tenant's events feed (device:online, device:offline,
// device:scan); a form pushes a config (registration mode, scan interval) to a reader
// (PUT /api/devices/{id}/config, an admin token). With `--device-auth none` readers belong to
// `--device-tenant` (`default`): sign in with a token of that tenant.
import { EventsConnection, pushDeviceConfig } from "./lib/index.js";
import { edge, h, requireToken, statusIndicator, toast } from "./common.js";

requireToken();
const events = new EventsConnection({
  url: edge,
  token: () => sessionStorage.getItem("tw.token") ?? "",
  events: ["device:online", "device:offline", "device:scan"],
});
statusIndicator(events, document.getElementById("status"));
events.on("error", (error) => error.kind !== "connection_lost" && toast(error.message));
events.on("gap", () => toast("some device events were missed while offline"));

const readers = new Map(); // deviceId → {online, lastSeen, lastTag}
const scans = [];

const main = document.getElementById("main");
const table = h("tbody");
const scanList = h("ol", { id: "scans", reversed: true });
const form = h(
  "form",
  { id: "config" },
  h("label", {}, "Reader ", h("input", { name: "deviceId", required: true, size: 12 })),
  h("label", {}, h("input", { type: "checkbox", name: "registrationMode" }), " registration mode"),
  h("label", {}, "Scan interval (ms) ", h("input", { type: "number", name: "scanIntervalMs", min: 0, max: 60000, size: 6 })),
  h("button", { class: "primary", type: "submit" }, "Push config"),
);
main.append(
  h("h2", {}, "Readers"),
  h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Reader"), h("th", {}, "State"), h("th", {}, "Last seen"), h("th", {}, "Last tag"))), table),
  h("h2", {}, "Push a config"),
  form,
  h("h2", {}, "Live scans"),
  scanList,
);

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const data = new FormData(form);
  const config = { registrationMode: data.get("registrationMode") === "on" };
  if (data.get("scanIntervalMs")) config.scanIntervalMs = Number(data.get("scanIntervalMs"));
  try {
    const answer = await pushDeviceConfig(events, String(data.get("deviceId")), config);
    toast(`config stored${answer.online ? " and pushed" : "; the reader gets it when it connects"}`, "ok");
  } catch (error) {
    toast(error.message);
  }
});

const when = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "—");

function render() {
  table.replaceChildren(
    ...[...readers.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id, reader]) =>
        h(
          "tr",
          { "data-device": id },
          h("td", {}, id),
          h("td", { class: reader.online ? "online" : "offline" }, reader.online ? "online" : "offline"),
          h("td", {}, when(reader.lastSeen)),
          h("td", {}, reader.lastTag ?? "—"),
        ),
      ),
  );
  scanList.replaceChildren(...scans.slice(0, 50).map((scan) => h("li", { "data-tag": scan.tagId }, `${when(scan.timestamp)} ${scan.deviceId} — ${scan.tagId}${scan.location ? ` @ ${scan.location}` : ""}`)));
}

events.onEvent(({ type, data }) => {
  const scan = data?.scan;
  const deviceId = data?.deviceId ?? scan?.deviceId;
  if (!deviceId) return;
  const reader = readers.get(deviceId) ?? { online: false };
  const at = data.timestamp ?? scan?.timestamp ?? Date.now();
  if (type === "device:online") Object.assign(reader, { online: true, lastSeen: at });
  if (type === "device:offline") Object.assign(reader, { online: false, lastSeen: reader.lastSeen ?? at });
  if (type === "device:scan" && scan) {
    Object.assign(reader, { online: true, lastSeen: at, lastTag: scan.tagId });
    scans.unshift(scan);
  }
  readers.set(deviceId, reader);
  render();
});

render();
events.connect();
