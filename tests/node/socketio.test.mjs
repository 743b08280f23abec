// The official socket.io-client 4.8 against the hubbub binary: transports, namespaces,
// middleware, acks both ways, binary, rooms, mixing with raw v1 clients, reconnection.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, once, post, v1Client } from "./server.mjs";

let server;
const clients = [];

before(async () => {
  server = await startServer({ args: ["--heartbeat-interval", "2s", "--heartbeat-timeout", "2s"] });
});

after(async () => {
  for (const c of clients) c.close?.() ?? c.disconnect?.();
  const code = await server.stop();
  assert.equal(code, 0, "the server exits 0 on SIGTERM");
});

function client(opts = {}, nsp = "/") {
  const s = io(server.url + nsp, { reconnection: false, forceNew: true, ...opts });
  clients.push(s);
  return s;
}

async function connected(s) {
  if (!s.connected) await once(s, "connect");
  return s;
}

function v1(path) {
  const ws = v1Client(server.wsUrl + path);
  clients.push(ws);
  return ws;
}

test("polling only", async () => {
  const s = await connected(client({ transports: ["polling"], auth: { user: "poller" } }));
  assert.equal(s.io.engine.transport.name, "polling");
  const ack = await s.emitWithAck("join", { room: "p" });
  assert.equal(ack.ok, true);
  assert.equal(ack.room, "p");
  const got = once(s, "news");
  await s.emitWithAck("publish", { room: "p", event: "news", data: { n: 1 } });
  const [data, meta] = await got;
  assert.deepEqual(data, { n: 1 });
  assert.equal(meta.room, "p");
  assert.equal(meta.from, "poller");
  assert.equal(typeof meta.ts, "number");
  s.disconnect();
});

test("websocket only", async () => {
  const s = await connected(client({ transports: ["websocket"] }));
  assert.equal(s.io.engine.transport.name, "websocket");
  const ack = await s.emitWithAck("broadcast", { event: "hello", data: 1 });
  assert.equal(ack.ok, true);
  s.disconnect();
});

test("upgrade from polling to websocket", async () => {
  const s = await connected(client());
  if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade");
  assert.equal(s.io.engine.transport.name, "websocket");
  const ack = await s.emitWithAck("join", { room: "u" });
  assert.equal(ack.ok, true);
  s.disconnect();
});

test("main and custom namespaces keep separate rooms", async () => {
  const main = await connected(client({ transports: ["websocket"] }));
  const custom = await connected(client({ transports: ["websocket"] }, "/custom"));
  await main.emitWithAck("join", { room: "same" });
  await custom.emitWithAck("join", { room: "same" });
  let leaked = false;
  main.on("only-custom", () => (leaked = true));
  const got = once(custom, "only-custom");
  await custom.emitWithAck("publish", { room: "same", event: "only-custom", data: "x" });
  await got;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(leaked, false, "a custom namespace's room is not the main one's");
  main.disconnect();
  custom.disconnect();
});

test("middleware rejection arrives as connect_error with its data", async () => {
  const s = client({ transports: ["websocket"], auth: { user: 42 } });
  const [err] = await once(s, "connect_error");
  assert.equal(err.message, "invalid user");
  assert.deepEqual(err.data, { code: "bad_request", field: "auth.user" });
  const bad = client({ transports: ["polling"], auth: { user: "" } }, "/other");
  const [err2] = await once(bad, "connect_error");
  assert.equal(err2.message, "invalid user");
});

test("acks from client to server, with and without timeout", async () => {
  const s = await connected(client({ transports: ["websocket"], auth: { user: "acker" } }));
  const ack = await s.emitWithAck("join", { room: "acks" });
  assert.deepEqual({ ok: ack.ok, members: ack.members }, { ok: true, members: 1 });
  const pub = await s.timeout(2000).emitWithAck("publish", { room: "acks", event: "e", data: 1 });
  assert.equal(pub.ok, true);
  assert.equal(typeof pub.seq, "number");
  const bad = await s.emitWithAck("send", { to: "nobody-here", event: "e" });
  assert.deepEqual(bad, { ok: false, code: "user_offline", message: "user `nobody-here` is not online" });
  const invalid = await s.emitWithAck("publish", { event: "no room" });
  assert.equal(invalid.ok, false);
  assert.equal(invalid.code, "bad_request");
  // An event the server never acknowledges times out on the client.
  await assert.rejects(s.timeout(200).emitWithAck("no-such-event", {}), /timed out/);
  s.disconnect();
});

test("acks from server to client, with and without timeout", async () => {
  const asker = await connected(client({ transports: ["websocket"], auth: { user: "asker" } }));
  const answerer = await connected(client({ transports: ["websocket"], auth: { user: "answerer" } }));
  answerer.on("question", (data, cb) => cb({ answer: data.q * 2 }));
  const res = await asker.emitWithAck("request", { to: "answerer", event: "question", data: { q: 21 } });
  assert.deepEqual(res, { ok: true, responses: [{ answer: 42 }], timeouts: 0 });
  const silent = await connected(client({ transports: ["polling"], auth: { user: "silent" } }));
  silent.on("question", () => {});
  const res2 = await asker.emitWithAck("request", { to: "silent", event: "question", data: {}, timeout_ms: 200 });
  assert.deepEqual(res2, { ok: true, responses: [], timeouts: 1 });
  for (const c of [asker, answerer, silent]) c.disconnect();
});

test("binary both ways, nested inside objects", async () => {
  const a = await connected(client({ transports: ["websocket"], auth: { user: "bin-a" } }));
  const b = await connected(client({ transports: ["polling"], auth: { user: "bin-b" } }));
  const raw = v1("/ws/bin-v1");
  await raw.opened;
  await raw.next((m) => m.op === "welcome");
  for (const s of [a, b]) await s.emitWithAck("join", { room: "bin" });
  raw.send(JSON.stringify({ op: "join", room: "bin", id: 1 }));
  await raw.next((m) => m.op === "ack");
  const gotB = once(b, "pic");
  const pic = Buffer.from([0, 1, 2, 254, 255]);
  await a.emitWithAck("publish", { room: "bin", event: "pic", data: { nested: { pic, label: "x" } } });
  const [data] = await gotB;
  assert.ok(Buffer.isBuffer(data.nested.pic), "a Buffer arrives as a Buffer over polling too");
  assert.deepEqual([...data.nested.pic], [0, 1, 2, 254, 255]);
  assert.equal(data.nested.label, "x");
  const m = await raw.next((m) => m.op === "message" && m.event === "pic");
  assert.deepEqual(m.data.nested.pic, { _binary: pic.toString("base64") });
  // A v1 client's {"_binary": ...} reaches Socket.IO clients as a Buffer.
  const gotA = once(a, "from-v1");
  raw.send(JSON.stringify({ op: "publish", room: "bin", event: "from-v1", data: { deep: [{ _binary: "AQID" }] } }));
  const [d2] = await gotA;
  assert.ok(Buffer.isBuffer(d2.deep[0]));
  assert.deepEqual([...d2.deep[0]], [1, 2, 3]);
  a.disconnect();
  b.disconnect();
  raw.close();
});

test("room broadcast with and without the sender", async () => {
  const a = await connected(client({ transports: ["websocket"], auth: { user: "ra" } }));
  const b = await connected(client({ transports: ["websocket"], auth: { user: "rb" } }));
  for (const s of [a, b]) await s.emitWithAck("join", { room: "r" });
  const both = [once(a, "with"), once(b, "with")];
  await a.emitWithAck("publish", { room: "r", event: "with", data: 1 });
  await Promise.all(both);
  let selfGot = false;
  a.on("without", () => (selfGot = true));
  const other = once(b, "without");
  await a.emitWithAck("publish", { room: "r", event: "without", data: 2, exclude_self: true });
  await other;
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(selfGot, false);
  a.disconnect();
  b.disconnect();
});

test("raw WebSocket and Socket.IO clients share a room", async () => {
  const s = await connected(client({ transports: ["websocket"], auth: { user: "sio-user" } }));
  const raw = v1("/ws/v1-user");
  await raw.opened;
  await raw.next((m) => m.op === "welcome");
  raw.send(JSON.stringify({ op: "join", room: "mixed", id: 1 }));
  await raw.next((m) => m.op === "ack" && m.id === 1);
  const joinAck = await s.emitWithAck("join", { room: "mixed" });
  assert.equal(joinAck.members, 2);
  const p = await raw.next((m) => m.op === "presence");
  assert.equal(p.joined, "sio-user");
  // v1 -> Socket.IO
  const got = once(s, "chat");
  raw.send(JSON.stringify({ op: "publish", room: "mixed", event: "chat", data: { text: "from v1" } }));
  const [data, meta] = await got;
  assert.deepEqual(data, { text: "from v1" });
  assert.equal(meta.from, "v1-user");
  assert.equal(meta.room, "mixed");
  // Socket.IO -> v1
  await s.emitWithAck("publish", { room: "mixed", event: "chat", data: { text: "from sio" } });
  const m = await raw.next((m) => m.op === "message" && m.data.text === "from sio");
  assert.equal(m.from, "sio-user");
  assert.equal(typeof m.seq, "number");
  // HTTP push to the room reaches both
  const pushed = once(s, "alert");
  const r = await post(server.url, "/api/push", { room: "mixed", event: "alert", data: 7 });
  assert.equal(r.body.delivered, 2);
  assert.equal((await pushed)[0], 7);
  await raw.next((m) => m.event === "alert");
  // Broadcast to all reaches both as well.
  const b = once(s, "everyone");
  raw.send(JSON.stringify({ op: "broadcast", event: "everyone", data: true }));
  await b;
  // And presence reaches Socket.IO clients as a `presence` event.
  const left = once(s, "presence");
  raw.close();
  const [pres] = await left;
  assert.deepEqual(pres, { room: "mixed", left: "v1-user", count: 1 });
});

test("a server-side disconnect, then reconnection", async () => {
  const s = await connected(client({ transports: ["websocket"], auth: { user: "kicked" } }));
  const gone = once(s, "disconnect");
  const r = await post(server.url, "/api/users/kicked/disconnect", {});
  assert.equal(r.body.disconnected, 1);
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
  s.connect();
  await once(s, "connect");
  const ack = await s.emitWithAck("join", { room: "back" });
  assert.equal(ack.ok, true);
  s.disconnect();
});

test("the client reconnects on its own after a server restart", async () => {
  const own = await startServer();
  const s = io(own.url, { transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 200 });
  clients.push(s);
  await connected(s);
  const port = own.port;
  const down = once(s, "disconnect");
  assert.equal(await own.stop(), 0);
  const [reason] = await down;
  assert.equal(reason, "transport close");
  const back = once(s, "connect", 10000);
  const again = await startServer({ port });
  await back;
  assert.ok(s.connected);
  assert.equal((await s.emitWithAck("join", { room: "after-restart" })).ok, true);
  s.disconnect();
  assert.equal(await again.stop(), 0);
});

test("1,000 clients in one room each get every message, in order", async () => {
  const N = 1000;
  const M = 100;
  const room = "thousand";
  await post(server.url, "/api/rooms", { name: room, presence: false, history: 0 });
  const socks = [];
  for (let i = 0; i < N; i++) {
    const s = io(server.url, { transports: ["websocket"], forceNew: true, reconnection: false });
    socks.push(s);
  }
  await Promise.all(socks.map((s) => connected(s)));
  await Promise.all(socks.map((s) => s.emitWithAck("join", { room })));
  const done = socks.map(
    (s) =>
      new Promise((resolve, reject) => {
        let next = 0;
        s.on("tick", (n) => {
          if (n !== next) reject(new Error(`expected ${next}, got ${n}`));
          next++;
          if (next === M) resolve();
        });
      }),
  );
  for (let i = 0; i < M; i++) {
    const r = await post(server.url, "/api/push", { room, event: "tick", data: i });
    assert.equal(r.body.delivered, N);
  }
  await Promise.all(done);
  for (const s of socks) s.disconnect();
});

test("connection state recovery: same id, same rooms, missed events", async () => {
  const own = await startServer({ args: ["--socketio-recovery", "2m"] });
  const s = io(own.url, { transports: ["websocket"], auth: { user: "resumer" }, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  clients.push(s);
  await connected(s);
  await s.emitWithAck("join", { room: "resume" });
  const first = once(s, "live");
  await post(own.url, "/api/push", { room: "resume", event: "live", data: 0 });
  const [d0, m0, offset] = await first;
  assert.equal(d0, 0);
  assert.equal(m0.room, "resume");
  assert.equal(typeof offset, "string", "recorded events carry their offset last");
  const id = s.id;
  const gone = once(s, "disconnect");
  s.io.engine.close(); // the client drops its transport: a temporary disconnection
  assert.equal((await gone)[0], "forced close");
  // Published while the client is away.
  for (const n of [1, 2, 3]) await post(own.url, "/api/push", { room: "resume", event: "live", data: n });
  const got = [];
  s.on("live", (n) => got.push(n));
  await once(s, "connect", 10000);
  assert.equal(s.recovered, true);
  assert.equal(s.id, id, "the same socket id");
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(got, [1, 2, 3], "the missed events, in order, once");
  // Still in the room.
  await post(own.url, "/api/push", { room: "resume", event: "live", data: 4 });
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(got, [1, 2, 3, 4]);
  s.disconnect();
  assert.equal(await own.stop(), 0);
});

test("without recovery (the default) events carry exactly their arguments", async () => {
  const s = await connected(client({ transports: ["websocket"], auth: { user: "exact" } }));
  await s.emitWithAck("join", { room: "exact" });
  const got = new Promise((resolve) => s.once("e", (...args) => resolve(args)));
  await post(server.url, "/api/push", { room: "exact", event: "e", data: 1 });
  const args = await got;
  assert.equal(args.length, 2, "data and meta, no offset");
  s.disconnect();
});
