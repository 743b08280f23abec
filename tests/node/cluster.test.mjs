// A Node socket.io 4.8 server with @socket.io/redis-adapter, a Node @socket.io/redis-emitter
// and two hubbub nodes share one cluster through a real redis-server (started here):
// room broadcasts go every way (binary included), fetchSockets and serverSideEmit reach the
// hubbub nodes, socketsJoin and disconnectSockets act on their sockets, and an HTTP push
// on hubbub counts the Node server's clients.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createServer, Agent } from "node:http";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { io as ioc } from "socket.io-client";
import { startServer, freePort, once, post, v1Client } from "./server.mjs";
import { startRedis, ready, RedisClients } from "./redis.mjs";

let redis, redisUrl, hubbubs, nodeIo, nodeUrl, emitter, redisClients;
const clients = [];

before(async () => {
  redis = await startRedis();
  redisUrl = redis.url;
  redisClients = new RedisClients(redisUrl);
  const args = ["--adapter", "redis", "--redis-url", redisUrl, "--store", "memory"];
  hubbubs = [await startServer({ args }), await startServer({ args })];
  for (const h of hubbubs) await ready(h);
  const [pub, sub] = await redisClients.pair();
  const http = createServer();
  nodeIo = new Server(http, { adapter: createAdapter(pub, sub, { requestsTimeout: 3000 }) });
  nodeIo.on("connection", (socket) => {
    socket.data.user = socket.handshake.auth.user;
    socket.join("room1");
  });
  nodeIo.on("ping-node", (cb) => cb({ node: "node-js" }));
  const port = await freePort();
  await new Promise((r) => http.listen(port, "127.0.0.1", r));
  nodeUrl = `http://127.0.0.1:${port}`;
  emitter = new Emitter(await redisClients.client());
});

after(async () => {
  for (const c of clients) c.close?.() ?? c.disconnect?.();
  nodeIo?.close();
  await redisClients?.quitAll();
  for (const h of hubbubs ?? []) assert.equal(await h.stop(), 0);
  redis?.child.kill();
});

function sio(url, auth) {
  const s = ioc(url, { reconnection: false, forceNew: true, transports: ["websocket"], auth });
  clients.push(s);
  return s;
}

async function connected(s) {
  if (!s.connected) await once(s, "connect");
  return s;
}

function v1(url, path) {
  const ws = v1Client(url.replace("http", "ws") + path);
  clients.push(ws);
  return ws;
}

/** A Node client (joined to room1 by the server), a Socket.IO client of hubbub node 0 and
 * a v1 client of hubbub node 1, both in room1 too. */
async function trio() {
  const onNode = await connected(sio(nodeUrl, { user: "nina" }));
  const onHub = await connected(sio(hubbubs[0].url, { user: "hugo" }));
  await onHub.emitWithAck("join", { room: "room1" });
  const raw = v1(hubbubs[1].url, "/ws/vera");
  await raw.opened;
  assert.equal((await raw.request({ op: "join", room: "room1" })).op, "ack");
  return { onNode, onHub, raw };
}

test("room broadcasts go from Node to hubbub and back, binary included", async () => {
  const { onNode, onHub, raw } = await trio();

  // Node server → hubbub's Socket.IO and v1 clients, exactly the arguments given.
  const got = once(onHub, "from-node");
  nodeIo.to("room1").emit("from-node", { a: 1 }, Buffer.from([1, 2, 3]));
  const [obj, bin] = await got;
  assert.deepEqual(obj, { a: 1 });
  assert.deepEqual([...new Uint8Array(bin)], [1, 2, 3]);
  const m = await raw.next((m) => m.op === "message" && m.event === "from-node");
  assert.deepEqual(m.data, [{ a: 1 }, { _binary: "AQID" }]);

  // hubbub (v1 publish on node 1) → the Node server's client and node 0's Socket.IO client.
  const toNode = once(onNode, "chat");
  const toHub = once(onHub, "chat");
  const ack = await raw.request({ op: "publish", room: "room1", event: "chat", data: { text: "hi" } });
  assert.equal(ack.op, "ack");
  for (const [data, meta] of [await toNode, await toHub]) {
    assert.deepEqual(data, { text: "hi" });
    assert.equal(meta.room, "room1");
    assert.equal(meta.from, "vera");
    assert.equal(typeof meta.ts, "number");
  }

  // The emitter → everyone in the room, wherever they are connected.
  const e1 = once(onNode, "from-emitter");
  const e2 = once(onHub, "from-emitter");
  emitter.to("room1").emit("from-emitter", 42, "x");
  assert.deepEqual(await e1, [42, "x"]);
  assert.deepEqual(await e2, [42, "x"]);
  const em = await raw.next((m) => m.op === "message" && m.event === "from-emitter");
  assert.deepEqual(em.data, [42, "x"]);

  // The emitter to everyone, except a room.
  const all = once(onHub, "everyone");
  emitter.except("nowhere").emit("everyone", { n: 1 });
  assert.deepEqual(await all, [{ n: 1 }]);
});

test("an HTTP push on hubbub counts the Node server's clients", async () => {
  await trio();
  const r = await post(hubbubs[1].url, "/api/push", { room: "room1", event: "count", data: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  // This test's three clients, plus the previous test's (still connected): two of each kind.
  const sockets = await nodeIo.in("room1").fetchSockets();
  assert.equal(r.body.delivered, sockets.length, JSON.stringify(r.body));
});

test("fetchSockets, socketsJoin and disconnectSockets from Node act on hubbub's sockets", async () => {
  const { onHub, raw } = await trio();
  const welcome = await raw.next((m) => m.op === "welcome");
  const sockets = await nodeIo.in("room1").fetchSockets();
  const ids = sockets.map((s) => s.id);
  assert.ok(ids.includes(onHub.id), "the Socket.IO socket on hubbub is listed");
  assert.ok(ids.includes(welcome.conn), "the v1 connection on hubbub is listed");
  const hugo = sockets.find((s) => s.id === onHub.id);
  assert.equal(hugo.data.user, "hugo");
  assert.ok(hugo.rooms.has("room1"));

  nodeIo.in(onHub.id).socketsJoin("room2");
  await new Promise((r) => setTimeout(r, 200));
  const got = once(onHub, "in-room2");
  const r = await post(hubbubs[0].url, "/api/push", { room: "room2", event: "in-room2", data: true });
  assert.equal(r.body.delivered, 1, JSON.stringify(r.body));
  await got;

  const gone = once(onHub, "disconnect");
  nodeIo.in(onHub.id).disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");
});

test("serverSideEmit from Node is answered by every hubbub node", async () => {
  // The adapter's requestsTimeout (3 s) bounds the wait.
  const responses = await nodeIo.serverSideEmitWithAck("hubbub:node");
  assert.equal(responses.length, 2, JSON.stringify(responses));
  const ids = [];
  for (const h of hubbubs) ids.push((await (await fetch(h.url + "/api/stats")).json()).node);
  assert.deepEqual(responses.map((r) => r.node).sort(), ids.sort());
  // Node servers list the hubbub nodes beside themselves.
  const stats = await (await fetch(hubbubs[0].url + "/api/stats")).json();
  assert.equal(stats.nodes.length, 2);
});

test("broadcastWithAck from Node gathers the acknowledgements of hubbub's Socket.IO clients", async () => {
  const onNode = await connected(sio(nodeUrl, { user: "nora" }));
  const onHub = await connected(sio(hubbubs[1].url, { user: "hana" }));
  await onHub.emitWithAck("join", { room: "acks" });
  nodeIo.in(onNode.id).socketsJoin("acks");
  const raw = v1(hubbubs[0].url, "/ws/vic");
  await raw.opened;
  assert.equal((await raw.request({ op: "join", room: "acks" })).op, "ack");
  onNode.on("ask", (n, _bin, cb) => cb({ from: "node", n }));
  onHub.on("ask", (n, bin, cb) => cb({ from: "hubbub", n, len: bin.byteLength }));
  await new Promise((r) => setTimeout(r, 100));
  // Every socket asked answers, wherever it is connected; the wait ends with the last one.
  const responses = await nodeIo.to("acks").timeout(3000).emitWithAck("ask", 7, Buffer.from([1, 2]));
  assert.deepEqual(
    responses.sort((a, b) => a.from.localeCompare(b.from)),
    [{ from: "hubbub", n: 7, len: 2 }, { from: "node", n: 7 }],
  );
  // The v1 client, which cannot acknowledge, got the message without being counted.
  const m = await raw.next((m) => m.op === "message" && m.event === "ask");
  assert.deepEqual(m.data, [7, { _binary: "AQI=" }]);
});

test("with --store redis, Socket.IO recovery on one node replays what another node published", async () => {
  const args = ["--adapter", "redis", "--redis-url", redisUrl, "--store", "redis", "--socketio-recovery", "2m"];
  const nodes = [await startServer({ args }), await startServer({ args })];
  try {
    for (const h of nodes) await ready(h);
    const [a, b] = nodes;
    const s = ioc(a.url, { transports: ["websocket"], auth: { user: "rita" }, reconnectionDelay: 100, reconnectionDelayMax: 200 });
    clients.push(s);
    await connected(s);
    await s.emitWithAck("join", { room: "kept-resume" });
    const first = once(s, "live");
    const r0 = await post(b.url, "/api/push", { room: "kept-resume", event: "live", data: 0 });
    assert.equal(r0.body.seq, 1, JSON.stringify(r0.body));
    const [d0, m0, offset] = await first;
    assert.deepEqual([d0, m0.seq, typeof offset], [0, 1, "string"], "numbered, with this node's offset");
    const gone = once(s, "disconnect");
    s.io.engine.close();
    await gone;
    for (const n of [1, 2, 3]) await post(b.url, "/api/push", { room: "kept-resume", event: "live", data: n });
    const got = [];
    s.on("live", (n, meta) => got.push([n, meta.seq]));
    await once(s, "connect", 10000);
    assert.equal(s.recovered, true);
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(got, [[1, 2], [2, 3], [3, 4]], "the missed messages, with their seqs, once");
    s.disconnect();
  } finally {
    for (const h of nodes) assert.equal(await h.stop(), 0);
  }
});

test("a Node server and a hubbub node with another adapter key meet, apart from the default cluster", async () => {
  const h = await startServer({ args: ["--adapter", "redis", "--redis-url", redisUrl, "--store", "memory", "--redis-key", "other"] });
  const [pub, sub] = await redisClients.pair();
  const http = createServer();
  const otherIo = new Server(http, { adapter: createAdapter(pub, sub, { key: "other", requestsTimeout: 3000 }) });
  otherIo.on("connection", (socket) => socket.join("keyed"));
  const port = await freePort();
  await new Promise((r) => http.listen(port, "127.0.0.1", r));
  try {
    await ready(h);
    const onNode = await connected(sio(`http://127.0.0.1:${port}`, { user: "kai" }));
    const onHub = await connected(sio(h.url, { user: "kim" }));
    await onHub.emitWithAck("join", { room: "keyed" });
    // The default cluster's member of a room of that name hears nothing of this one.
    const onDefault = await connected(sio(hubbubs[0].url, { user: "dee" }));
    await onDefault.emitWithAck("join", { room: "keyed" });
    let leaked = 0;
    onDefault.on("k", () => leaked++);
    const toHub = once(onHub, "k");
    otherIo.to("keyed").emit("k", "from node");
    assert.deepEqual(await toHub, ["from node"]);
    const toNode = once(onNode, "k");
    const r = await post(h.url, "/api/push", { room: "keyed", event: "k", data: "from hubbub" });
    assert.equal(r.body.delivered, 2, JSON.stringify(r.body));
    assert.equal((await toNode)[0], "from hubbub");
    const sockets = await otherIo.in("keyed").fetchSockets();
    assert.deepEqual(sockets.map((s) => s.data.user ?? "node").sort(), ["kim", "node"]);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(leaked, 0);
  } finally {
    otherIo.close();
    assert.equal(await h.stop(), 0);
  }
});

/** nginx (Debian's package) with deploy/nginx-cluster.conf in front of both hubbub nodes. */
async function startNginx() {
  const bin = ["nginx", "/usr/sbin/nginx"].find((b) => !spawnSync(b, ["-v"]).error);
  assert.ok(bin, "nginx is required (apt-get install nginx)");
  const dir = mkdtempSync(join(tmpdir(), "nginx-"));
  const port = await freePort();
  const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
  const conf = readFileSync(join(root, "deploy/nginx-cluster.conf"), "utf8")
    .replaceAll("@DIR@", dir)
    .replaceAll("@PORT@", String(port))
    .replaceAll("@NODE1_PORT@", String(hubbubs[0].port))
    .replaceAll("@NODE2_PORT@", String(hubbubs[1].port));
  writeFileSync(join(dir, "nginx.conf"), conf);
  const child = spawn(bin, ["-c", join(dir, "nginx.conf"), "-p", dir], { stdio: "ignore" });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url + "/healthz")).ok) break;
    } catch {}
    assert.ok(i < 200, "nginx started");
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, url };
}

async function socketioCount(h) {
  return (await (await fetch(h.url + "/api/stats")).json()).connections.socketio;
}

test("polling clients through nginx with sticky sessions, on two nodes, talk to each other", async () => {
  const nginx = await startNginx();
  try {
    // Clients from different loopback addresses, until one lands on each node.
    const on = [null, null];
    for (let i = 1; i < 40 && !(on[0] && on[1]); i++) {
      const before = await Promise.all(hubbubs.map(socketioCount));
      const agent = new Agent({ localAddress: `127.0.0.${i}` });
      const s = await connected(
        (() => {
          const c = ioc(nginx.url, { reconnection: false, forceNew: true, transports: ["polling"], agent, auth: { user: `p${i}` } });
          clients.push(c);
          return c;
        })(),
      );
      const after = await Promise.all(hubbubs.map(socketioCount));
      const node = after[0] > before[0] ? 0 : after[1] > before[1] ? 1 : -1;
      assert.ok(node >= 0, "the client is counted on one node");
      if (!on[node]) on[node] = s;
      else {
        // Gone before the next count: a close counted late would hide the next client.
        s.disconnect();
        for (let w = 0; (await socketioCount(hubbubs[node])) >= after[node]; w++) {
          assert.ok(w < 200, "a closed client leaves the count");
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    }
    assert.ok(on[0] && on[1], "clients reached both nodes");
    const [a, b] = on;
    assert.equal(a.io.engine.transport.name, "polling");
    await a.emitWithAck("join", { room: "poll-room" });
    await b.emitWithAck("join", { room: "poll-room" });
    // Many polling round trips: each must reach the node that holds its session.
    const got = [];
    b.on("poll", (data) => got.push(data));
    for (let n = 0; n < 20; n++) {
      const ack = await a.emitWithAck("publish", { room: "poll-room", event: "poll", data: n });
      assert.ok(!ack?.error, JSON.stringify(ack));
      await new Promise((r) => setTimeout(r, 20));
    }
    for (let i = 0; got.length < 20 && i < 100; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(got, [...Array(20).keys()]);
    assert.ok(a.connected && b.connected, "no session was lost to the wrong node");
    assert.equal(b.io.engine.transport.name, "polling");
  } finally {
    nginx.child.kill();
  }
});
