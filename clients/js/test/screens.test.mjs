// The screens (clients/app) in headless Chromium, driven by playwright-core, against a real
// `tablewire dev`: the pages are the edge's own embedded copy of clients/app, served at /app/,
// and reach the dev (or a proxy in front of it) through `?edge=`. An order posted over
// `POST /api/orders` appears on two kitchen screens and a bump on one moves it on the other, and
// a screen that lost its network reconnects, says so and shows the order posted meanwhile;
// a device scan appears on the dashboard and a pushed config reaches the reader; two browser
// contexts build and finalize a room; the customer display shows an update. Chromium is
// $TABLEWIRE_CHROMIUM or `chromium` on PATH (scripts/install-chromium); with
// $TABLEWIRE_SCREENSHOTS set, each screen is saved there as a PNG (the README's pictures).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { AUTH_SECRET, mintToken, order, startDev, startProxy } from "./support.mjs";

const screenshots = process.env.TABLEWIRE_SCREENSHOTS;

function chromiumPath() {
  if (process.env.TABLEWIRE_CHROMIUM) return process.env.TABLEWIRE_CHROMIUM;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim();
    } catch {
      // try the next name
    }
  }
  throw new Error("no Chromium: set TABLEWIRE_CHROMIUM or run scripts/install-chromium (scripts/test does)");
}

let dev, base, browser;
const pageErrors = [];

before(async () => {
  dev = await startDev();
  base = `${dev.http}/app`; // served by the edge itself
  browser = await chromium.launch({ executablePath: chromiumPath(), args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await dev?.stop();
});

/** A page in its own browser context (its own sessionStorage), signed in when `token` is given. */
async function open(path, { token, tenant, edge = dev.http } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  if (token) {
    await context.addInitScript(
      ([t, n]) => {
        sessionStorage.setItem("tw.token", t);
        sessionStorage.setItem("tw.tenant", n);
      },
      [token, tenant],
    );
  }
  const page = await context.newPage();
  page.on("pageerror", (error) => pageErrors.push(`${path}: ${error.message}`));
  await page.goto(`${base}/${path}${path.includes("?") ? "&" : "?"}edge=${encodeURIComponent(edge)}`);
  return page;
}

const snap = async (page, name) => screenshots && (await page.screenshot({ path: join(screenshots, `${name}.png`) }));

async function postOrder(token, name) {
  const response = await fetch(`${dev.http}/api/orders`, {
    method: "POST",
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: JSON.stringify(order("demo", name)),
  });
  assert.equal(response.status, 201);
  return response.json();
}

test("an order appears on two kitchen screens, a bump on one moves it on the other, and a screen reconnects", async () => {
  const token = mintToken({ tenant: "demo" });
  const proxy = await startProxy(Number(new URL(dev.http).port)); // the second screen's network
  const one = await open("kitchen.html", { token, tenant: "demo" });
  const two = await open("kitchen.html", { token, tenant: "demo", edge: proxy.http });
  for (const page of [one, two]) await page.waitForSelector('#status[data-state="open"]');
  const created = await postOrder(token, "Asha");
  const card = (status) => `[data-status="${status}"] [data-number="${created.orderNumber}"]`;
  for (const page of [one, two]) await page.waitForSelector(card("pending"), { timeout: 5000 });
  await one.click(`${card("pending")} .bump`);
  await two.waitForSelector(card("preparing"), { timeout: 5000 });
  // The second screen loses its network, comes back on its own and says so.
  proxy.cut();
  await two.waitForSelector('#status[data-state="reconnecting"]', { timeout: 10000 });
  await postOrder(token, "Ravi"); // while it is away
  proxy.restore();
  await two.waitForSelector('#status[data-state="open"][data-reconnects="1"]', { timeout: 10000 });
  assert.match(await two.textContent("#status"), /reconnected 1×/);
  await two.waitForFunction(() => document.querySelectorAll(".card").length === 2);
  await snap(two, "kitchen");
  await proxy.close();
  assert.deepEqual(pageErrors, []);
});

test("a scan appears on the device dashboard and a pushed config reaches the reader", async () => {
  const admin = mintToken({ tenant: "default", role: "admin" }); // dev: devices are tenant `default`
  const page = await open("devices.html", { token: admin, tenant: "default" });
  await page.waitForSelector('#status[data-state="open"]');
  const reader = new WebSocket(`${dev.ws}/ws/device?deviceId=GATE-1`);
  const config = new Promise((resolve) =>
    reader.on("message", (data) => {
      const frame = JSON.parse(String(data));
      if (frame.action === "config") resolve(frame);
    }),
  );
  await new Promise((resolve, reject) => reader.once("open", resolve).once("error", reject));
  reader.send(JSON.stringify({ action: "scan", tagId: "TAG-42", location: "front gate" }));
  await page.waitForSelector('[data-tag="TAG-42"]', { timeout: 5000 });
  await page.waitForSelector('[data-device="GATE-1"] .online', { timeout: 5000 });
  await page.fill('input[name="deviceId"]', "GATE-1");
  await page.check('input[name="registrationMode"]');
  await page.fill('input[name="scanIntervalMs"]', "2000");
  await page.click("#config button");
  assert.deepEqual(await config, { action: "config", registrationMode: true, scanIntervalMs: 2000 });
  await snap(page, "devices");
  reader.close();
  assert.deepEqual(pageErrors, []);
});

test("two browser contexts build and finalize a room together", async () => {
  const room = `t${Date.now()}`;
  const ana = await open(`room.html?room=${room}&name=Ana`);
  const ben = await open(`room.html?room=${room}&name=Ben`);
  await ana.click("#join button");
  await ana.waitForSelector("#order-status");
  await ben.click("#join button");
  await ben.waitForSelector("#order-status");
  for (const [page, dish, price] of [
    [ana, "Dosa", "4.50"],
    [ben, "Lassi", "2.00"],
  ]) {
    await page.fill('#add input[name="dish"]', dish);
    await page.fill('#add input[name="price"]', price);
    await page.click("#add button");
  }
  for (const page of [ana, ben]) await page.waitForFunction(() => document.querySelectorAll("[data-item]").length === 2);
  await ben.selectOption("#split", "itemized");
  await ana.waitForFunction(() => document.querySelector("#split").value === "itemized");
  assert.equal(await ben.isDisabled("#finalize"), true, "only the first joiner may finalize");
  await ana.click("#finalize");
  await ben.waitForSelector('#order-status[data-status="finalized"]', { timeout: 5000 });
  assert.equal(await ben.textContent("#total"), "Total 6.50");
  assert.deepEqual(await ben.$$eval("#splits li", (items) => items.map((li) => li.textContent)), ["Ana: 4.50", "Ben: 2.00"]);
  await snap(ben, "room");
  assert.deepEqual(pageErrors, []);
});

test("the customer display shows the current order and transcriptions", async () => {
  const page = await open("display.html?session=kiosk-1");
  await page.waitForSelector('#status[data-state="open"]');
  const update = (body) =>
    fetch(`${dev.http}/session/kiosk-1/update`, {
      method: "POST",
      headers: { Authorization: `Bearer ${AUTH_SECRET}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  await update({ type: "transcription", displayData: { text: "Two masala dosas, please." } });
  await update({ type: "order_summary", displayData: { items: [{ name: "Masala dosa", quantity: 2, price: 450 }], total: 900 } });
  await page.waitForFunction(() => document.querySelector("#current-order").textContent.includes("2 × Masala dosa"));
  assert.match(await page.textContent("#transcriptions"), /Two masala dosas/);
  await snap(page, "display");
  const signIn = await open("index.html", { token: mintToken({ tenant: "demo" }), tenant: "demo" });
  await signIn.waitForFunction(() => document.querySelector("#who").textContent.includes("demo"));
  await snap(signIn, "signin");
  assert.deepEqual(pageErrors, []);
});
