// Starts and stops the hubbub binary for the interop tests.
import { spawn } from "node:child_process";
import WebSocket from "ws";
import { mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const BIN =
  process.env.HUBBUB_BIN ||
  join(process.env.CARGO_TARGET_DIR || join(process.env.HOME, ".cache/hubbub-target"), "release/hubbub");

export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** Starts hubbub on `port` (a free one by default) with extra flags; resolves when it answers. */
export async function startServer({ port, args = [] } = {}) {
  port = port || (await freePort());
  const cwd = mkdtempSync(join(tmpdir(), "hubbub-"));
  const child = spawn(BIN, ["--bind", `127.0.0.1:${port}`, ...args], {
    cwd,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {}
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`hubbub did not start (${BIN}):\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}`,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      return new Promise((resolve) => child.on("exit", (code) => resolve(code)));
    },
    output: () => output,
    pid: () => child.pid,
  };
}

export function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });
}

export async function post(url, path, body) {
  const r = await fetch(url + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: await r.json() };
}

/**
 * A raw v1 WebSocket on `url`: `next(pred)` takes the first frame matching `pred` (frames
 * that do not match wait for a later `next`), `request(frame)` sends it with a fresh id and
 * resolves with its `ack` or `error`, `opened` resolves once it is open, `pending()` takes
 * what is queued.
 */
export function v1Client(url) {
  const ws = new WebSocket(url);
  const queue = [];
  const waiters = [];
  ws.on("message", (d) => {
    const m = JSON.parse(d.toString());
    const w = waiters.shift();
    w ? w(m) : queue.push(m);
  });
  ws.next = (pred = () => true, ms = 5000) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no v1 message")), ms);
      const take = (m) => {
        if (pred(m)) {
          clearTimeout(t);
          resolve(m);
        } else {
          queue.push(m);
          waiters.unshift(take);
        }
      };
      const i = queue.findIndex(pred);
      if (i >= 0) {
        clearTimeout(t);
        resolve(queue.splice(i, 1)[0]);
      } else waiters.push(take);
    });
  let ids = 0;
  /** Sends `frame` with a fresh id and resolves with its `ack` or `error`. */
  ws.request = (frame) => {
    const id = ++ids;
    ws.send(JSON.stringify({ ...frame, id }));
    return ws.next((m) => (m.op === "ack" || m.op === "error") && m.id === id);
  };
  ws.opened = once(ws, "open");
  ws.pending = () => queue.splice(0);
  return ws;
}
