// What the client's tests share: a real `tablewire dev` (and separate `tablewire edge`
// processes) started from $TABLEWIRE_BIN on free ports, a TCP proxy that kills sockets
// mid-stream, HS256 tokens minted with the dev's JWT secret, and waiting on a condition with a
// deadline (never for a fixed time). Used by the *.test.mjs files beside it.
import { spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const JWT_SECRET = "client-test-jwt-secret";
export const AUTH_SECRET = "client-test-auth-secret";

function binary() {
  const bin = process.env.TABLEWIRE_BIN;
  if (!bin) throw new Error("TABLEWIRE_BIN must name the tablewire binary (tests/ts_client.rs sets it)");
  return bin;
}

/** A free TCP port on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves with `check()`'s first truthy value; throws after `ms`. */
export async function until(what, check, ms = 30000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function healthy(http) {
  return until(`${http}/healthz`, async () => {
    try {
      return (await fetch(`${http}/healthz`)).status === 200;
    } catch {
      return false;
    }
  });
}

/** A child `tablewire` process; `stop()` sends SIGTERM (an edge drains: close 1001). */
class Child {
  constructor(args) {
    this.args = args;
    this.output = "";
    this.start();
  }

  start() {
    this.process = spawn(binary(), this.args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TABLEWIRE_LOG: process.env.TABLEWIRE_TEST_LOG ?? "warn" },
    });
    this.exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.stdout.on("data", (chunk) => (this.output += chunk));
    this.process.stderr.on("data", (chunk) => (this.output += chunk));
  }

  async stop(signal = "SIGTERM") {
    if (this.process.exitCode === null && this.process.signalCode === null) this.process.kill(signal);
    await this.exited;
  }
}

/** `tablewire dev` on a free port with its own data dir. */
export async function startDev() {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), "tablewire-client-"));
  const child = new Child([
    "dev",
    "--listen",
    `127.0.0.1:${port}`,
    "--data-dir",
    join(dir, "data"),
    "--auth-secret",
    AUTH_SECRET,
    "--jwt-secret",
    JWT_SECRET,
  ]);
  const http = `http://127.0.0.1:${port}`;
  await healthy(http);
  const natsUrl = await until("the dev's NATS URL", () => /nats\s+(nats:\/\/\S+)/.exec(child.output)?.[1]);
  return {
    http,
    ws: `ws://127.0.0.1:${port}`,
    natsUrl,
    async stop() {
      await child.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A separate `tablewire edge` on NATS `natsUrl`, restartable on the same port. */
export async function startEdge(natsUrl) {
  const port = await freePort();
  const child = new Child([
    "edge",
    "--nats-url",
    natsUrl,
    "--listen",
    `127.0.0.1:${port}`,
    "--auth-secret",
    AUTH_SECRET,
    "--jwt-secret",
    JWT_SECRET,
    "--drain-timeout-secs",
    "1",
  ]);
  const http = `http://127.0.0.1:${port}`;
  await healthy(http);
  return {
    http,
    ws: `ws://127.0.0.1:${port}`,
    stop: (signal) => child.stop(signal),
    async start() {
      child.start();
      await healthy(http);
    },
  };
}

/** A TCP proxy to `port` whose `cut()` kills every connection through it (no close frame)
 * and refuses new ones until `restore()`. */
export async function startProxy(port) {
  const sockets = new Set();
  let up = true;
  const server = createServer((client) => {
    if (!up) return client.destroy();
    const upstream = connect(port, "127.0.0.1");
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      a.pipe(b);
      a.on("error", () => b.destroy());
      a.on("close", () => b.destroy());
    }
    sockets.add(client).add(upstream);
    client.on("close", () => sockets.delete(client));
    upstream.on("close", () => sockets.delete(upstream));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const proxyPort = server.address().port;
  return {
    ws: `ws://127.0.0.1:${proxyPort}`,
    http: `http://127.0.0.1:${proxyPort}`,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    /** Stops it, killing what still goes through it. */
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

const base64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 JWT for `tenant` with `role`, valid for `ttlSecs` (negative: already expired). */
export function mintToken({ tenant = "demo", role = "service", ttlSecs = 3600, sub = "client-test" } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = base64url(JSON.stringify({ sub, tenant, role, iat: now, exp: now + ttlSecs, jti: randomUUID() }));
  const signature = createHmac("sha256", JWT_SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** A tenant no other test uses. */
export const freshTenant = (name) => `${name}${randomUUID().slice(0, 8)}`;

/** A valid seed 002 order. */
export function order(tenantId, name) {
  return {
    tenantId,
    orderType: "takeout",
    paymentMethod: "cash",
    customer: { name, phone: "555-0100" },
    cart: { items: [{ name: "Masala dosa", price: 450, quantity: 1 }] },
    status: "confirmed",
    source: "pos",
  };
}

/** The tenant's active orders as the server has them. */
export async function activeOrders(http, tenant) {
  const response = await fetch(`${http}/api/orders?status=active`, {
    headers: { Authorization: `Bearer ${mintToken({ tenant })}` },
  });
  if (response.status !== 200) throw new Error(`GET /api/orders: ${response.status}`);
  return (await response.json()).orders;
}
