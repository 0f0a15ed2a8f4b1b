// Seed 003's wscat session against a tablewire edge, with the real `wscat` and the seed's own
// messages: a scan of TEST123 at "Main Gate" is answered {"success":true,"scan":…,"user":null};
// the same scan again at once is refused ("Please wait 1 second between scans"); a heartbeat is
// acknowledged. A dashboard's config push reaches the session; a second session of the same
// device replaces the first (which wscat reports by exiting); in registration mode an unknown
// tag is registered; markup in a location is refused; the HTTP fallback `POST /api/rfid/scan`
// follows the same 1 s rule. Run by tests/seed_clients.rs with TW_URL (the seed's
// `ws://localhost:8787/ws/device?deviceId=TEST001`), TW_HTTP (the edge's HTTP address) and
// TW_ADMIN_TOKEN (the dashboard's admin JWT; the device itself needs none under `tablewire dev`).
import { check, deadline, http, succeed } from "./lib/harness.mjs";
import { wscat } from "./lib/wscat.mjs";

const { TW_URL: url, TW_HTTP: base, TW_ADMIN_TOKEN: adminToken } = process.env;
deadline(60000);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const scan = '{ "action": "scan", "tagId": "TEST123", "location": "Main Gate" }';
const heartbeat = '{ "action": "heartbeat", "timestamp": 1699000000 }';
const first = wscat("session 1", url, { execute: [scan, scan, heartbeat] });
const accepted = await first.inbox.next("the scan accepted", (f) => f.success === true && f.scan);
check(accepted.user === null, `an unknown tag's user: ${JSON.stringify(accepted)}`);
const s = accepted.scan;
check(s.deviceId === "TEST001" && s.tagId === "TEST123" && s.location === "Main Gate" && s.registered === false,
  `scan ${JSON.stringify(s)}`);
check(typeof s.id === "string" && typeof s.timestamp !== "undefined", `scan id/timestamp ${JSON.stringify(s)}`);
const duplicate = await first.inbox.next("the duplicate refused", (f) => f.success === false);
check(duplicate.error === "Please wait 1 second between scans" && duplicate.code === "TOO_SOON",
  `duplicate: ${JSON.stringify(duplicate)}`);
check(duplicate.retryable === true && duplicate.retryAfterMs > 0 && duplicate.retryAfterMs <= 1000,
  `retryAfterMs ${duplicate.retryAfterMs}`);
const refusedAt = Date.now();
const beat = await first.inbox.next("the heartbeat acknowledged", (f) => f.action === "heartbeat");
check(beat.success === true && typeof beat.timestamp === "number", `heartbeat: ${JSON.stringify(beat)}`);

// The dashboard pushes a config; the connected device gets it.
const pushed = await http("PUT", `${base}/api/devices/TEST001/config`, { token: adminToken, body: { registrationMode: true } });
check(pushed.status === 200 && pushed.body.success === true && pushed.body.online === true, `config: ${JSON.stringify(pushed)}`);
const config = await first.inbox.next("the config push", (f) => f.action === "config");
check(config.registrationMode === true, `config frame ${JSON.stringify(config)}`);

// After the interval the error named, a new session of the same device: it replaces the first.
await sleep(Math.max(0, duplicate.retryAfterMs + 50 - (Date.now() - refusedAt)));
const marked = '{ "action": "scan", "tagId": "TEST456", "location": "<b onmouseover=alert(1)>Main Gate</b>" }';
const unknown = '{ "action": "scan", "tagId": "TEST456", "location": "Main Gate" }';
const second = wscat("session 2", url, { execute: [marked, unknown] });
const replaced = await first.exited();
check(replaced.code === 0, `session 1 ended ${JSON.stringify(replaced)}`);
const markup = await second.inbox.next("the markup refused", (f) => f.success === false);
check(markup.code === "VALIDATION_ERROR" && /location/.test(markup.error), `markup: ${JSON.stringify(markup)}`);
const registered = await second.inbox.next("the unknown tag registered", (f) => f.success === true && f.scan);
check(registered.scan.tagId === "TEST456" && registered.scan.registered === true, `registration: ${JSON.stringify(registered)}`);

// The HTTP fallback: the same device, the same 1 s rule, then accepted.
const body = { deviceId: "TEST001", tagId: "TEST789", location: "Main Gate" };
const soon = await http("POST", `${base}/api/rfid/scan`, { body });
check(soon.status === 429 && JSON.stringify(soon.body).includes("TOO_SOON"), `HTTP too soon: ${JSON.stringify(soon)}`);
const wait = JSON.stringify(soon.body).match(/"retryAfterMs":(\d+)/);
await sleep(Number(wait?.[1] ?? 1000) + 50);
const later = await http("POST", `${base}/api/rfid/scan`, { body });
check(later.status === 200 && later.body.success === true && later.body.scan.tagId === "TEST789", `HTTP scan: ${JSON.stringify(later)}`);

second.stop();
succeed({ scans: 3, duplicate: duplicate.code, replaced: true });
