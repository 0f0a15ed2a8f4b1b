// What every seed-client program in tests/js shares: failing loudly, waiting for a condition
// with a deadline (never for a fixed time), collecting frames, asking the Rust test that runs it
// to act on the server (`tw:cut`, `tw:restore`, `tw:stop`, each answered `ok` on stdin), and
// reporting its result as one `tw:result {json}` line. Used by events.mjs, pos.mjs, device.mjs,
// display.mjs and collab-wscat.mjs; tests/seed_clients.rs reads their lines.
import { createInterface } from "node:readline";

export const fail = (why) => {
  console.error(`FAIL: ${why}`);
  process.exit(1);
};

/** Fails the program if it is still running after `ms`. */
export const deadline = (ms) => setTimeout(() => fail(`the whole run took over ${ms} ms`), ms).unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check()` is true; fails after `ms` (20 s unless told). */
export async function until(what, check, ms = 20000) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) fail(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Frames as they come, and the earliest one matching a predicate, waited for. */
export class Inbox {
  constructor(name) {
    this.name = name;
    this.frames = [];
    this.all = [];
  }

  push(frame) {
    this.frames.push(frame);
    this.all.push(frame);
  }

  /** Takes the earliest frame matching `match`, waiting for it. */
  async next(what, match) {
    const found = await until(`${this.name}: ${what}`, () => this.frames.findIndex(match) + 1);
    return this.frames.splice(found - 1, 1)[0];
  }

  /** The earliest frame of `type`. */
  of(type) {
    return this.next(type, (f) => f.type === type);
  }
}

let answers = null;

/** Asks the Rust test to do `command` to the server side and waits until it says it did. */
export async function control(command) {
  answers ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`tw:${command}`);
  const { value, done } = await answers.next();
  if (done || value.trim() !== "ok") fail(`the test did not do ${command}: ${value}`);
}

/** Reports success: one `tw:result` line, then exit 0. */
export function succeed(result) {
  console.log(`tw:result ${JSON.stringify(result)}`);
  process.exit(0);
}

export function check(condition, why) {
  if (!condition) fail(why);
}

/** An HTTP request with a JSON body; resolves to {status, headers, body}. */
export async function http(method, url, { token, body, headers = {} } = {}) {
  const response = await fetch(url, {
    method,
    headers: {
      ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = text;
  }
  return { status: response.status, headers: response.headers, body: parsed };
}
