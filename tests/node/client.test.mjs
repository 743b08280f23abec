// Hubbub's JavaScript client (/client.js) in Node against the hubbub binary: requests as
// promises, events, notifications and the unread count, a dead link noticed by its ping,
// and a server restarted under it (reconnect with backoff, resume with `since`: nothing
// missed, nothing repeated).
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { connect, HubbubError } from "../../static/client.js";
import { startServer, freePort, post } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const servers = [];
const clients = [];

after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.stop();
});

async function server(args = []) {
  const s = await startServer({ args: ["--store", "memory", ...args] });
  servers.push(s);
  return s;
}

function client(srv, opts = {}) {
  const c = connect(srv.wsUrl + "/ws", { WebSocket, minDelay: 50, maxDelay: 500, ...opts });
  clients.push(c);
  return c;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Resolves when `c` emits `event` (with its first argument). */
function next(c, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event}`)), ms);
    const off = c.on(event, (v) => {
      clearTimeout(t);
      off();
      resolve(v);
    });
  });
}

async function until(fn, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (fn()) return;
    if (Date.now() > deadline) throw new Error(`not met in ${ms} ms: ${fn}`);
    await sleep(20);
  }
}

test("the server serves the client and its type declarations", async () => {
  const s = await server();
  const js = await fetch(s.url + "/client.js");
  assert.match(js.headers.get("content-type"), /javascript/);
  assert.equal(await js.text(), readFileSync(join(here, "../../static/client.js"), "utf8"));
  const dts = await fetch(s.url + "/client.d.ts");
  assert.equal(dts.status, 200);
  assert.match(await dts.text(), /export declare function connect/);
});

test("requests are promises settled by acks and errors; events reach handlers", async () => {
  const s = await server();
  const ann = client(s, { user: "ann" });
  const bob = client(s, { user: "bob" });
  const online = next(ann, "online");
  await Promise.all([online, next(bob, "online")]);
  assert.equal(ann.state, "online");
  assert.equal(ann.user, "ann");
  const ack = await ann.join("lobby", { history: 5 });
  assert.equal(ack.room, "lobby");
  assert.equal(ack.members, 1);
  await bob.join("lobby");
  const heard = new Promise((resolve) => ann.on("chat", (data, meta) => resolve({ data, meta })));
  const published = await bob.publish("lobby", "chat", { text: "hi" });
  assert.equal(published.seq, 1);
  const { data, meta } = await heard;
  assert.deepEqual(data, { text: "hi" });
  assert.equal(meta.from, "bob");
  assert.equal(meta.room, "lobby");
  assert.equal(meta.seq, 1);
  // A refused request rejects with the server's code.
  await assert.rejects(ann.publish("", "chat", 1), (e) => e instanceof HubbubError && e.code === "bad_request");
  await assert.rejects(ann.send("nobody", "dm", 1), (e) => e.code === "user_offline");
  const sent = await ann.send("bob", "dm", "psst");
  assert.equal(sent.delivered, 1);
  // Presence and leaving.
  const carol = client(s, { user: "carol" });
  const p = next(ann, "presence");
  await carol.join("lobby");
  const pres = await p;
  assert.equal(pres.joined, "carol");
  assert.equal(pres.count, 3);
  assert.deepEqual(await carol.leave("lobby"), { room: "lobby" });
});

test("notifications and the unread count, on every tab", async () => {
  const s = await server();
  const tab1 = client(s, { user: "nia" });
  const tab2 = client(s, { user: "nia" });
  await Promise.all([next(tab1, "unread"), next(tab2, "unread")]);
  assert.equal(tab1.unread, 0);
  const got = Promise.all([next(tab1, "notification"), next(tab2, "notification")]);
  const counts = Promise.all([next(tab1, "unread"), next(tab2, "unread")]);
  const { status, body } = await post(s.url, "/api/notify", { to: "nia", event: "mention", data: { by: "x" } });
  assert.equal(status, 201);
  const [n1] = await got;
  assert.equal(n1.id, body.id);
  assert.deepEqual(await counts, [1, 1]);
  const list = await tab1.notifications();
  assert.equal(list.unread, 1);
  assert.equal(list.notifications[0].event, "mention");
  const cleared = Promise.all([next(tab1, "unread"), next(tab2, "unread")]);
  assert.deepEqual(await tab2.read({ ids: [body.id] }), { unread: 0 });
  assert.deepEqual(await cleared, [0, 0]);
  assert.equal(tab1.unread, 0);
});

test("a dead link is noticed by the ping and the client comes back by itself", async () => {
  const s = await server(["--heartbeat-interval", "30s"]);
  const c = client(s, { user: "pinger", pingInterval: 200, pingTimeout: 300 });
  await next(c, "online");
  await c.join("r");
  // The server stops answering (the process is paused): nothing closes the socket.
  process.kill(s.pid(), "SIGSTOP");
  try {
    await next(c, "offline", 3000);
  } finally {
    process.kill(s.pid(), "SIGCONT");
  }
  await next(c, "online", 10000);
  // The room was joined again.
  const heard = new Promise((resolve) => c.on("e", resolve));
  await post(s.url, "/api/push", { room: "r", event: "e", data: "still here" });
  assert.equal(await heard, "still here");
});

test("a server restarted under the client: nothing missed, nothing repeated", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbub-client-"));
  const port = await freePort();
  const args = ["--store", "sqlite", "--db", join(dir, "t.db")];
  let s = await startServer({ port, args });
  const reader = client(s, { user: "reader" });
  const writer = client(s, { user: "writer" });
  await Promise.all([next(reader, "online"), next(writer, "online")]);
  const seqs = [];
  reader.on("tick", (data, meta) => seqs.push(meta.seq));
  await reader.join("feed", { history: 100 });
  let n = 0;
  for (; n < 20; n++) await writer.publish("feed", "tick", n);
  await until(() => seqs.length === 20);
  // Restart: both clients go offline and come back; the writer's requests made meanwhile
  // wait for the connection.
  const offline = Promise.all([next(reader, "offline"), next(writer, "offline")]);
  assert.equal(await s.stop(), 0);
  await offline;
  const queued = [];
  for (; n < 30; n++) queued.push(writer.publish("feed", "tick", n).catch((e) => e));
  s = await startServer({ port, args });
  servers.push(s);
  // Messages published before the reader rejoined are replayed to it.
  for (let i = 0; i < 5; i++) {
    const r = await post(s.url, "/api/push", { room: "feed", event: "tick", data: `http ${i}` });
    assert.equal(r.status, 200);
  }
  await until(() => reader.state === "online" && writer.state === "online", 15000);
  for (const q of await Promise.all(queued)) assert.ok(!(q instanceof Error), `queued publish: ${q}`);
  for (; n < 40; n++) await writer.publish("feed", "tick", n);
  const expected = 20 + 5 + 10 + 10;
  await until(() => seqs.length >= expected, 15000);
  await sleep(200);
  assert.deepEqual(seqs, Array.from({ length: expected }, (_, i) => i + 1), "every seq once, in order");
});
