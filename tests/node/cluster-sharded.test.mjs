// The sharded flavour: a Node socket.io 4.8 server with @socket.io/redis-adapter's
// createShardedAdapter (Redis 7 SPUBLISH/SSUBSCRIBE, a channel per room) and two hubbub
// nodes started with --redis-pubsub sharded share one cluster through a real redis-server:
// room broadcasts go both ways on the rooms' channels (binary included), an HTTP push on
// hubbub counts the Node server's clients, fetchSockets, socketsJoin and disconnectSockets
// from Node act on hubbub's sockets, serverSideEmit is answered by every hubbub node, and
// broadcastWithAck gathers the acknowledgements of hubbub's Socket.IO clients.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createShardedAdapter } from "@socket.io/redis-adapter";
import { io as ioc } from "socket.io-client";
import { startServer, freePort, once, post, v1Client } from "./server.mjs";
import { startRedis, ready, RedisClients } from "./redis.mjs";

let redis, redisClients, hubbubs, nodeIo, nodeUrl;
const clients = [];

before(async () => {
  redis = await startRedis();
  redisClients = new RedisClients(redis.url);
  const args = ["--adapter", "redis", "--redis-url", redis.url, "--store", "memory", "--redis-pubsub", "sharded"];
  hubbubs = [await startServer({ args }), await startServer({ args })];
  for (const h of hubbubs) await ready(h);
  const [pub, sub] = await redisClients.pair();
  const http = createServer();
  nodeIo = new Server(http, { adapter: createShardedAdapter(pub, sub) });
  nodeIo.on("connection", (socket) => {
    socket.data.user = socket.handshake.auth.user;
    socket.join("room1");
  });
  const port = await freePort();
  await new Promise((r) => http.listen(port, "127.0.0.1", r));
  nodeUrl = `http://127.0.0.1:${port}`;
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

/** How many servers listen on a shard channel. */
async function shardListeners(channel) {
  const c = await redisClients.client();
  const reply = await c.sendCommand(["PUBSUB", "SHARDNUMSUB", channel]);
  return Number(reply[1]);
}

/** Waits until `n` servers listen on a room's channel (they subscribe as the room comes). */
async function roomListeners(room, n) {
  for (let i = 0; (await shardListeners(`socket.io#/#${room}#`)) !== n; i++) {
    assert.ok(i < 100, `${n} servers on the channel of ${room}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A Node client (joined to room1 by the server), a Socket.IO client of hubbub node 0 and
 * a v1 client of hubbub node 1, both in room1 too. */
async function trio() {
  const onNode = await connected(sio(nodeUrl, { user: "nina" }));
  const onHub = await connected(sio(hubbubs[0].url, { user: "hugo" }));
  await onHub.emitWithAck("join", { room: "room1" });
  const raw = v1Client(hubbubs[1].url.replace("http", "ws") + "/ws/vera");
  clients.push(raw);
  await raw.opened;
  assert.equal((await raw.request({ op: "join", room: "room1" })).op, "ack");
  await roomListeners("room1", 3);
  return { onNode, onHub, raw };
}

test("sharded: room broadcasts go from Node to hubbub and back on the room's channel", async () => {
  const { onNode, onHub, raw } = await trio();
  // Every server listens on the namespace's channel and its own, and on room1's.
  assert.equal(await shardListeners("socket.io#/#"), 3);

  const got = once(onHub, "from-node");
  nodeIo.to("room1").emit("from-node", { a: 1 }, Buffer.from([1, 2, 3]));
  const [obj, bin] = await got;
  assert.deepEqual(obj, { a: 1 });
  assert.deepEqual([...new Uint8Array(bin)], [1, 2, 3]);
  const m = await raw.next((m) => m.op === "message" && m.event === "from-node");
  assert.deepEqual(m.data, [{ a: 1 }, { _binary: "AQID" }]);

  const toNode = once(onNode, "chat");
  const toHub = once(onHub, "chat");
  const ack = await raw.request({ op: "publish", room: "room1", event: "chat", data: { text: "hi" } });
  assert.equal(ack.op, "ack");
  for (const [data, meta] of [await toNode, await toHub]) {
    assert.deepEqual(data, { text: "hi" });
    assert.equal(meta.room, "room1");
    assert.equal(meta.from, "vera");
  }

  // Everyone (the namespace's channel), from Node.
  const all = once(onHub, "everyone");
  nodeIo.emit("everyone", 5);
  assert.deepEqual(await all, [5]);
  const e = await raw.next((m) => m.op === "message" && m.event === "everyone");
  assert.equal(e.data, 5, "one argument is the v1 message's data");
});

test("sharded: an HTTP push on hubbub counts the Node server's clients", async () => {
  await trio();
  const r = await post(hubbubs[1].url, "/api/push", { room: "room1", event: "count", data: 1 });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const sockets = await nodeIo.in("room1").fetchSockets();
  assert.ok(sockets.length >= 3);
  assert.equal(r.body.delivered, sockets.length, JSON.stringify(r.body));
});

test("sharded: fetchSockets, socketsJoin and disconnectSockets from Node act on hubbub's sockets", async () => {
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
  await roomListeners("room2", 1);
  const got = once(onHub, "in-room2");
  // From the other hubbub node, which has no room2: on room2's channel.
  const r = await post(hubbubs[1].url, "/api/push", { room: "room2", event: "in-room2", data: true });
  assert.equal(r.body.delivered, 1, JSON.stringify(r.body));
  await got;
  // A Node RemoteSocket's emit reaches the hubbub socket it names.
  const direct = once(onHub, "direct");
  hugo.emit("direct", "to you");
  assert.deepEqual(await direct, ["to you"]);
  // And the v1 connection it names (its id is no socket.io id: on its own channel).
  const vera = sockets.find((s) => s.id === welcome.conn);
  vera.emit("direct", "to v1");
  const d = await raw.next((m) => m.op === "message" && m.event === "direct");
  assert.equal(d.data, "to v1");

  const gone = once(onHub, "disconnect");
  nodeIo.in(onHub.id).disconnectSockets();
  assert.equal((await gone)[0], "io server disconnect");
});

test("sharded: serverSideEmit from Node is answered by every hubbub node", async () => {
  const responses = await nodeIo.serverSideEmitWithAck("hubbub:node");
  assert.equal(responses.length, 2, JSON.stringify(responses));
  const ids = [];
  for (const h of hubbubs) ids.push((await (await fetch(h.url + "/api/stats")).json()).node);
  assert.deepEqual(responses.map((r) => r.node).sort(), ids.sort());
});

test("sharded: broadcastWithAck from Node gathers the acknowledgements of hubbub's Socket.IO clients", async () => {
  const onNode = await connected(sio(nodeUrl, { user: "nora" }));
  const onHub = await connected(sio(hubbubs[1].url, { user: "hana" }));
  await onHub.emitWithAck("join", { room: "acks" });
  nodeIo.in(onNode.id).socketsJoin("acks");
  const raw = v1Client(hubbubs[0].url.replace("http", "ws") + "/ws/vic");
  clients.push(raw);
  await raw.opened;
  assert.equal((await raw.request({ op: "join", room: "acks" })).op, "ack");
  onNode.on("ask", (n, _bin, cb) => cb({ from: "node", n }));
  onHub.on("ask", (n, bin, cb) => cb({ from: "hubbub", n, len: bin.byteLength }));
  await roomListeners("acks", 3);
  const responses = await nodeIo.to("acks").timeout(3000).emitWithAck("ask", 7, Buffer.from([1, 2]));
  assert.deepEqual(
    responses.sort((a, b) => a.from.localeCompare(b.from)),
    [{ from: "hubbub", n: 7, len: 2 }, { from: "node", n: 7 }],
  );
  const m = await raw.next((m) => m.op === "message" && m.event === "ask");
  assert.deepEqual(m.data, [7, { _binary: "AQI=" }]);
});
