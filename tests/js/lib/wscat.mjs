// Runs the real `wscat` command line (the npm package the seeds' READMEs install), as the seeds'
// sessions use it: `wscat -c URL`, then typing messages. Typed lines are either `-x` commands
// (sent on connect, the session held open with `-w -1`) or lines written to its standard input
// once it has shown a message. What it prints (one received message a line when its output is
// not a terminal) is parsed and collected. Used by device.mjs, display.mjs and collab-wscat.mjs.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Inbox, fail, until } from "./harness.mjs";

const bin = fileURLToPath(new URL("../node_modules/wscat/bin/wscat", import.meta.url));

/** A wscat session connected to `url`; `execute` lines are sent as soon as it connects. */
export function wscat(name, url, { execute = [] } = {}) {
  const args = [bin, "-c", url];
  for (const line of execute) args.push("-x", line);
  if (execute.length) args.push("-w", "-1");
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
  const inbox = new Inbox(name);
  let stderr = "";
  let exit = null;
  createInterface({ input: child.stdout }).on("line", (line) => {
    // wscat writes its prompt ("> ") after each typed line, so it can lead a message's line.
    const message = line.replace(/^(> )+/, "");
    try {
      inbox.push(JSON.parse(message));
    } catch {
      inbox.push({ unparsed: line });
    }
  });
  child.stderr.on("data", (d) => (stderr += d));
  child.on("exit", (code, signal) => (exit = { code, signal }));
  child.on("error", (e) => fail(`${name}: wscat did not start: ${e.message}`));
  return {
    inbox,
    /** Types a line, as at wscat's prompt. */
    type(line) {
      child.stdin.write(`${line}\n`);
    },
    /** Waits for the session to end by itself; returns how. */
    exited: () => until(`${name} to exit`, () => exit),
    stop() {
      if (!exit) child.kill("SIGTERM");
    },
    stderr: () => stderr,
  };
}
