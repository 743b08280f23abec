// A real redis-server for the cluster interop suites: started on a free port, with clients
// that are closed at the end, and a wait for a hubbub node to be ready in the cluster.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createClient } from "redis";
import { freePort } from "./server.mjs";

/** Starts redis-server on a free port; resolves with `{ child, url }` once it answers. */
export async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  await new Promise((resolve, reject) => {
    child.on("error", () =>
      reject(new Error("redis-server is required (apt-get install redis-server)")),
    );
    child.on("spawn", resolve);
  });
  const url = `redis://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    const c = createClient({ url });
    c.on("error", () => {});
    try {
      await c.connect();
      await c.quit();
      break;
    } catch {
      if (i > 100) throw new Error("redis-server did not start");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { child, url };
}

/** Redis clients of one suite, closed together by `quitAll`. */
export class RedisClients {
  constructor(url) {
    this.url = url;
    this.open = [];
  }

  /** A connected client. */
  async client() {
    const c = createClient({ url: this.url });
    c.on("error", () => {});
    await c.connect();
    this.open.push(c);
    return c;
  }

  /** A publisher and a subscriber, as the Node adapters take them. */
  async pair() {
    const pub = await this.client();
    const sub = pub.duplicate();
    sub.on("error", () => {});
    await sub.connect();
    this.open.push(sub);
    return [pub, sub];
  }

  async quitAll() {
    for (const c of this.open) await c.quit().catch(() => {});
  }
}

/** Waits until a hubbub node is ready: subscribed to Redis (and caught up, with its store). */
export async function ready(h) {
  for (let i = 0; (await fetch(h.url + "/readyz")).status !== 200; i++) {
    assert.ok(i < 200, `hubbub at ${h.url} ready`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
