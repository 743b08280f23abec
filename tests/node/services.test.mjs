// The services layer (docs/services.md) through the official socket.io-client 4.8 (and raw
// v1 WebSockets where a behaviour crosses transports) against the hubbub binary: durable
// acks across restarts (and a kill -9), the rooms events, the `chat` schema, direct
// messages kept with dm_history, notifications with read state, presence for the BFF, the
// seeds' Socket.IO chat events, and a seed's chat page served with static_dir and
// socketio_client_dir.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import WebSocket from "ws";
import { startServer, once, post, v1Client } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const SEED_DIR = join(here, "..", "fixtures", "seed-chat");
const CLIENT_DIST = join(here, "node_modules", "socket.io-client", "dist");

// `main`: direct messages kept (and the default SQLite store in the server's fresh cwd);
// `page`: a seed's folder and the npm client served as socket.io serves them.
let main;
let page;
const servers = [];
const killed = new Set();
const clients = [];

async function server(opts) {
  const s = await startServer(opts);
  servers.push(s);
  return s;
}

before(async () => {
  main = await server({ args: ["--dm-history", "50"] });
  page = await server({ args: ["--static-dir", SEED_DIR, "--socketio-client-dir", CLIENT_DIST] });
});

after(async () => {
  for (const c of clients) {
    if (c instanceof WebSocket) c.terminate();
    else c.disconnect();
  }
  for (const s of servers) {
    if (killed.has(s)) continue;
    assert.equal(await s.stop(), 0, "the server exits 0 on SIGTERM");
  }
});

/** A Socket.IO socket on the main namespace of `srv` as `user` (none: anonymous). */
function sio(srv, user, opts = {}) {
  const s = io(srv.url, {
    reconnection: false,
    forceNew: true,
    transports: ["websocket"],
    ...(user === undefined ? {} : { auth: { user } }),
    ...opts,
  });
  clients.push(s);
  return s;
}

async function connected(s) {
  if (!s.connected) await once(s, "connect");
  return s;
}

/** A raw v1 WebSocket of `srv`, closed with the others at the end. */
function v1(srv, path) {
  const ws = v1Client(srv.wsUrl + path);
  clients.push(ws);
  return ws;
}

/** Every emission of `event` on `s`, as argument arrays. */
function collect(s, event) {
  const got = [];
  s.on(event, (...args) => got.push(args));
  return got;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy. */
async function until(fn, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met in ${ms} ms: ${fn}`);
    await sleep(50);
  }
}

async function getJson(srv, path) {
  const r = await fetch(srv.url + path);
  return { status: r.status, body: await r.json() };
}

/** The pid of the hubbub process listening on `port` (Linux: /proc). */
function pidOf(port) {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let argv;
    try {
      argv = readFileSync(`/proc/${d}/cmdline`, "utf8").split("\0");
    } catch {
      continue;
    }
    if (argv[0].endsWith("hubbub") && argv.includes(`127.0.0.1:${port}`)) return Number(d);
  }
  throw new Error(`no hubbub process on port ${port}`);
}

/** Joins `room` with `opts`, recording the replayed `event`s and the ack in wire order. */
function joinRecording(s, event, join) {
  return new Promise((resolve) => {
    const order = [];
    const replayed = [];
    const onEvent = (data, meta) => {
      order.push("event");
      replayed.push({ data, meta });
    };
    s.on(event, onEvent);
    s.emit("join", join, (ack) => {
      order.push("ack");
      s.off(event, onEvent);
      resolve({ ack, replayed, order });
    });
  });
}

// ---------------------------------------------------------------------------------------
// 1. Durable acks

test("durable acks: what was acknowledged survives a restart and a kill -9, replayed in order", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbub-durable-"));
  const db = join(dir, "t.db");
  const args = ["--store", "sqlite", "--db", db];
  const room = "durable-room";

  const first = await server({ args });
  const pub = await connected(sio(first, "dur-ann"));
  const sub = await connected(sio(first, "dur-bob"));
  assert.equal((await pub.emitWithAck("join", { room })).ok, true);
  assert.equal((await sub.emitWithAck("join", { room })).ok, true);
  const live = collect(sub, "note");

  const sent = []; // {data, seq, from}
  let last = 0;
  for (let i = 0; i < 5; i++) {
    const data = { i, text: `one by one ${i}` };
    const ack = await pub.emitWithAck("publish", { room, event: "note", data });
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.ok(Number.isInteger(ack.seq) && ack.seq > last, `seq ${ack.seq} after ${last}`);
    last = ack.seq;
    sent.push({ data, seq: ack.seq, from: "dur-ann" });
  }
  // A burst from one socket: committed in batches, each acked with its own increasing seq.
  const burst = Array.from({ length: 20 }, (_, i) => ({ burst: i }));
  const acks = await Promise.all(burst.map((data) => pub.emitWithAck("publish", { room, event: "note", data })));
  acks.forEach((ack, i) => {
    assert.equal(ack.ok, true, JSON.stringify(ack));
    assert.ok(Number.isInteger(ack.seq) && ack.seq > last, `burst seq ${ack.seq} after ${last}`);
    last = ack.seq;
    sent.push({ data: burst[i], seq: ack.seq, from: "dur-ann" });
  });
  // A v1 publisher in the same room: its ack carries the next seq as well.
  const raw = v1(first, "/ws/dur-v1");
  await raw.opened;
  await raw.next((m) => m.op === "welcome");
  const v1ack = await raw.request({ op: "publish", room, event: "note", data: "from v1" });
  assert.equal(v1ack.op, "ack", JSON.stringify(v1ack));
  assert.ok(v1ack.seq > last);
  last = v1ack.seq;
  sent.push({ data: "from v1", seq: v1ack.seq, from: "dur-v1" });

  await until(() => live.length === sent.length);
  assert.deepEqual(
    live.map(([data, meta]) => ({ data, seq: meta.seq, from: meta.from })),
    sent,
    "delivered live, in order",
  );
  assert.ok(existsSync(db), "the store is the file given with --db");

  pub.disconnect();
  sub.disconnect();
  raw.close();
  assert.equal(await first.stop(), 0);

  // Restarted on the same file: `since: 0` replays exactly what was acknowledged, in order,
  // before the join's ack.
  const second = await server({ args });
  const reader = await connected(sio(second, "dur-carol"));
  const { ack, replayed, order } = await joinRecording(reader, "note", { room, since: 0 });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.seq, last, "the join's ack carries the room's last seq");
  assert.equal(ack.gap, undefined);
  assert.deepEqual(order, [...sent.map(() => "event"), "ack"], "replayed messages come before the ack");
  assert.deepEqual(
    replayed.map(({ data, meta }) => ({ data, seq: meta.seq, from: meta.from })),
    sent,
  );
  for (const { meta } of replayed) {
    assert.equal(meta.room, room);
    assert.equal(typeof meta.ts, "number");
  }
  // The counter was kept too: numbering goes on after the restart.
  const more = [];
  for (let i = 0; i < 3; i++) {
    const data = { after: i };
    const a = await reader.emitWithAck("publish", { room, event: "note", data });
    assert.equal(a.ok, true, JSON.stringify(a));
    assert.ok(a.seq > last, `seq ${a.seq} after a restart at ${last}`);
    last = a.seq;
    more.push({ data, seq: a.seq, from: "dur-carol" });
  }

  // kill -9 right after the acks: an acknowledged message has reached the file.
  const pid = pidOf(second.port);
  const dead = new Promise((resolve) => {
    const t = setInterval(() => {
      try {
        process.kill(pid, 0);
      } catch {
        clearInterval(t);
        resolve();
      }
    }, 20);
  });
  process.kill(pid, "SIGKILL");
  killed.add(second);
  await dead;
  await sleep(100); // the child is reaped by server.mjs's spawn

  const third = await server({ args });
  const late = await connected(sio(third, "dur-dan"));
  const again = await joinRecording(late, "note", { room, since: 0 });
  assert.equal(again.ack.ok, true);
  // After a crash the room's numbering jumps past what may have been delivered live and
  // never committed (docs/services.md): no seq is given twice.
  assert.ok(again.ack.seq > last, `numbering went on from ${again.ack.seq}, after ${last}`);
  assert.deepEqual(
    again.replayed.map(({ data, meta }) => ({ data, seq: meta.seq, from: meta.from })),
    [...sent, ...more],
    "every acknowledged message survived kill -9",
  );
  // `since` in the middle replays only what follows.
  const mid = sent[sent.length - 1].seq;
  const tail = await joinRecording(await connected(sio(third, "dur-eve")), "note", { room, since: mid });
  assert.deepEqual(
    tail.replayed.map(({ meta }) => meta.seq),
    more.map((m) => m.seq),
  );
  late.disconnect();
  assert.equal(await third.stop(), 0);
});

// ---------------------------------------------------------------------------------------
// 2. Rooms

test("rooms events: create_room, room_exists, rooms, room, room_not_found, room_full, delete_room", async () => {
  const room = "rooms-svc-x";
  const ann = await connected(sio(main, "rooms-ann"));
  const bob = await connected(sio(main, "rooms-bob"));

  const created = await ann.emitWithAck("create_room", { room, max_users: 1 });
  const info = {
    name: room,
    members: 0,
    max_users: 1,
    private: false,
    history: 100,
    history_ttl: 0,
    presence: true,
    schema: null,
  };
  assert.deepEqual(created, { ok: true, room: info });
  const dup = await bob.emitWithAck("create_room", { name: room });
  assert.equal(dup.ok, false);
  assert.equal(dup.code, "room_exists");
  assert.equal(typeof dup.message, "string");
  const badSchema = await ann.emitWithAck("create_room", { room: "rooms-svc-bad", schema: "no-such-schema" });
  assert.equal(badSchema.ok, false);
  assert.equal(badSchema.code, "bad_request");

  const list = await bob.emitWithAck("rooms", {});
  assert.equal(list.ok, true);
  assert.ok(Array.isArray(list.rooms));
  assert.deepEqual(list.rooms.find((r) => r.name === room), info);
  assert.equal(list.rooms.find((r) => r.name === "rooms-svc-bad"), undefined, "a refused room is not made");

  assert.deepEqual(await bob.emitWithAck("room", { room }), { ok: true, room: info });
  const missing = await bob.emitWithAck("room", { room: "rooms-svc-nowhere" });
  assert.equal(missing.ok, false);
  assert.equal(missing.code, "room_not_found");

  // max_users counts users: ann's second tab gets in, bob does not (over Socket.IO or v1).
  const joined = await ann.emitWithAck("join", { room });
  assert.equal(joined.ok, true, JSON.stringify(joined));
  assert.equal(joined.members, 1);
  const annTab2 = await connected(sio(main, "rooms-ann"));
  assert.equal((await annTab2.emitWithAck("join", { room })).ok, true, "a second tab of the same user is no new user");
  const full = await bob.emitWithAck("join", { room });
  assert.equal(full.ok, false);
  assert.equal(full.code, "room_full");
  const bobV1 = v1(main, "/ws/rooms-bob");
  await bobV1.opened;
  const fullV1 = await bobV1.request({ op: "join", room });
  assert.equal(fullV1.op, "error");
  assert.equal(fullV1.code, "room_full");
  assert.equal((await bob.emitWithAck("room", { room })).room.members, 1);
  // The v1 op sees the same room.
  const v1Room = await bobV1.request({ op: "room", room });
  assert.equal(v1Room.op, "ack", JSON.stringify(v1Room));
  assert.deepEqual(v1Room.room, { ...info, members: 1 });

  const deleted = await bob.emitWithAck("delete_room", { room });
  assert.deepEqual(deleted, { ok: true, deleted: room });
  const gone = await bob.emitWithAck("room", { room });
  assert.equal(gone.code, "room_not_found");
  assert.equal((await bob.emitWithAck("delete_room", { room })).code, "room_not_found");
  assert.equal((await bob.emitWithAck("rooms", {})).rooms.find((r) => r.name === room), undefined);
  // Its members were unsubscribed: a message to a room of that name no longer reaches them.
  let leaked = 0;
  ann.on("after-delete", () => leaked++);
  annTab2.on("after-delete", () => leaked++);
  await post(main.url, "/api/push", { room, event: "after-delete", data: 1 });
  await sleep(200);
  assert.equal(leaked, 0, "members of a deleted room are unsubscribed");
  for (const s of [ann, annTab2, bob]) s.disconnect();
  bobV1.close();
});

// ---------------------------------------------------------------------------------------
// 3. The chat schema

test("the chat schema: bad messages are refused with the field, good ones delivered, system only from the API", async () => {
  const room = "schema-chat-room";
  const ann = await connected(sio(main, "schema-ann"));
  const bob = await connected(sio(main, "schema-bob"));
  const created = await ann.emitWithAck("create_room", { room, schema: "chat" });
  assert.equal(created.ok, true, JSON.stringify(created));
  assert.equal(created.room.schema, "chat");
  for (const s of [ann, bob]) assert.equal((await s.emitWithAck("join", { room })).ok, true);
  const got = collect(bob, "msg");

  const refused = async (data, message) => {
    const ack = await ann.emitWithAck("publish", { room, event: "msg", data });
    if (message === undefined) {
      assert.equal(ack.ok, false, JSON.stringify(ack));
      assert.equal(ack.code, "bad_request");
    } else {
      assert.deepEqual(ack, { ok: false, code: "bad_request", message });
    }
  };
  await refused({ type: "chat", payload: {} }, "payload.content is required");
  await refused({ payload: { content: "hi" } }, "type is required");
  await refused({ type: "chat", payload: { content: "x".repeat(4001) } }, "payload.content must have 1 to 4000 characters (it has 4001)");
  await refused({ type: "chat", payload: { content: "hi" }, extra: 1 }, "`extra` is not a field of a chat message (type, payload)");
  await refused("just a string");
  await refused({ type: "system", payload: { content: "I am the server" } }); // never from a client

  const good = { type: "chat", payload: { content: "hello, schema" } };
  const ok = await ann.emitWithAck("publish", { room, event: "msg", data: good });
  assert.equal(ok.ok, true, JSON.stringify(ok));
  const longest = { type: "chat", payload: { content: "y".repeat(4000), to: "schema-bob" } };
  assert.equal((await ann.emitWithAck("publish", { room, event: "msg", data: longest })).ok, true);
  await until(() => got.length >= 2);
  await sleep(100);
  assert.deepEqual(
    got.map(([data]) => data),
    [good, longest],
    "only the valid messages were delivered",
  );
  assert.equal(got[0][1].room, room);
  assert.equal(got[0][1].seq, ok.seq);

  // The same check on v1.
  const raw = v1(main, "/ws/schema-v1");
  await raw.opened;
  assert.equal((await raw.request({ op: "join", room })).op, "ack");
  const v1bad = await raw.request({ op: "publish", room, event: "msg", data: { type: "chat", payload: {} } });
  assert.deepEqual(
    { op: v1bad.op, code: v1bad.code, message: v1bad.message },
    { op: "error", code: "bad_request", message: "payload.content is required" },
  );
  const v1sys = await raw.request({ op: "publish", room, event: "msg", data: { type: "system", payload: { content: "no" } } });
  assert.equal(v1sys.op, "error");
  assert.equal(v1sys.code, "bad_request");

  // type "system" from the server's API is accepted and delivered.
  const sys = { type: "system", payload: { content: "maintenance at noon" } };
  const pushed = once(bob, "msg");
  const r = await post(main.url, "/api/push", { room, event: "msg", data: sys });
  assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r));
  assert.deepEqual((await pushed)[0], sys);
  // ...but the API is checked as well.
  const apiBad = await post(main.url, "/api/push", { room, event: "msg", data: { type: "chat", payload: {} } });
  assert.equal(apiBad.status, 400, JSON.stringify(apiBad));
  for (const s of [ann, bob]) s.disconnect();
  raw.close();
});

// ---------------------------------------------------------------------------------------
// 4. Direct messages

test("direct messages with dm_history: kept for an offline user, replayed through dm:{other}, then live", async () => {
  const ann = await connected(sio(main, "dm-ann"));
  const first = await ann.emitWithAck("send", { to: "dm-bob", event: "chat", data: "hi bob" });
  assert.deepEqual(first, { ok: true, delivered: 0, seq: 1 }, "a send to an offline user is kept");

  const bob = await connected(sio(main, "dm-bob"));
  const { ack, replayed, order } = await joinRecording(bob, "chat", { room: "dm:dm-ann", history: 10 });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.seq, 1);
  assert.deepEqual(order, ["event", "ack"]);
  assert.equal(replayed[0].data, "hi bob");
  const meta = replayed[0].meta;
  assert.deepEqual({ from: meta.from, to: meta.to, seq: meta.seq }, { from: "dm-ann", to: "dm-bob", seq: 1 });
  assert.equal(typeof meta.ts, "number");
  assert.equal("room" in meta, false, "a direct message carries no room");

  // Live: bob is both the addressee and in the conversation, and gets it once.
  const bobGot = collect(bob, "chat");
  const bobV1 = v1(main, "/ws/dm-bob");
  await bobV1.opened;
  await bobV1.next((m) => m.op === "welcome");
  const second = await ann.emitWithAck("send", { to: "dm-bob", event: "chat", data: { text: "live" } });
  assert.deepEqual(second, { ok: true, delivered: 2, seq: 2 });
  await until(() => bobGot.length >= 1);
  const m = await bobV1.next((m) => m.op === "message");
  assert.deepEqual(
    { op: m.op, event: m.event, data: m.data, from: m.from, to: m.to, seq: m.seq },
    { op: "message", event: "chat", data: { text: "live" }, from: "dm-ann", to: "dm-bob", seq: 2 },
  );
  assert.equal("room" in m, false);
  assert.equal(typeof m.ts, "number");
  await sleep(200);
  assert.equal(bobGot.length, 1, "one copy per connection");
  assert.deepEqual(bobGot[0][0], { text: "live" });
  assert.deepEqual(
    { from: bobGot[0][1].from, to: bobGot[0][1].to, seq: bobGot[0][1].seq, room: bobGot[0][1].room },
    { from: "dm-ann", to: "dm-bob", seq: 2, room: undefined },
  );

  // ann's other tab reads the conversation as dm:dm-bob and hears both directions.
  const annTab = await connected(sio(main, "dm-ann"));
  const tab = await joinRecording(annTab, "chat", { room: "dm:dm-bob", since: 0 });
  assert.equal(tab.ack.ok, true);
  assert.deepEqual(
    tab.replayed.map(({ data, meta }) => [data, meta.from, meta.to, meta.seq]),
    [
      ["hi bob", "dm-ann", "dm-bob", 1],
      [{ text: "live" }, "dm-ann", "dm-bob", 2],
    ],
  );
  const annGot = once(ann, "chat");
  const tabGot = once(annTab, "chat");
  const reply = await bob.emitWithAck("send", { to: "dm-ann", event: "chat", data: "hi ann" });
  assert.equal(reply.ok, true, JSON.stringify(reply));
  assert.equal(reply.seq, 3, "one numbering per conversation");
  for (const [data, meta] of [await annGot, await tabGot]) {
    assert.equal(data, "hi ann");
    assert.deepEqual([meta.from, meta.to, meta.seq], ["dm-bob", "dm-ann", 3]);
  }
  // ann's own message reaches her tab that joined the conversation.
  const own = once(annTab, "chat");
  await ann.emitWithAck("send", { to: "dm-bob", event: "chat", data: "see you" });
  const [ownData, ownMeta] = await own;
  assert.equal(ownData, "see you");
  assert.deepEqual([ownMeta.from, ownMeta.to, ownMeta.seq], ["dm-ann", "dm-bob", 4]);

  // Publishing to a conversation is refused; nobody else can read it.
  const pub = await bob.emitWithAck("publish", { room: "dm:dm-ann", event: "chat", data: "no" });
  assert.equal(pub.ok, false);
  assert.equal(pub.code, "bad_request");
  const eve = await connected(sio(main, "dm-eve"));
  const peek = await joinRecording(eve, "chat", { room: "dm:dm-ann", since: 0 });
  assert.equal(peek.ack.ok, true);
  assert.deepEqual(peek.replayed, [], "dm:dm-ann is eve's own conversation with ann, empty");
  for (const s of [ann, annTab, bob, eve]) s.disconnect();
  bobV1.close();
});

// ---------------------------------------------------------------------------------------
// 5. Notifications

test("notifications: pushed to every tab with the unread count, listed, marked read, kept across a restart", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbub-notify-"));
  const args = ["--store", "sqlite", "--db", join(dir, "t.db")];
  const user = "note-user";
  const first = await server({ args });

  const tab1 = sio(first, user);
  const tab2 = sio(first, user, { transports: ["polling"] });
  const u1 = once(tab1, "unread");
  const u2 = once(tab2, "unread");
  assert.deepEqual((await u1)[0], { count: 0 }, "a new connection hears its unread count");
  assert.deepEqual((await u2)[0], { count: 0 });
  await connected(tab1);
  await connected(tab2);

  const n1 = [once(tab1, "notification"), once(tab2, "notification")];
  const c1 = [once(tab1, "unread"), once(tab2, "unread")];
  const r = await post(first.url, "/api/notify", { to: user, event: "mention", data: { by: "ann", text: "look" } });
  assert.equal(r.status, 201, JSON.stringify(r));
  assert.ok(Number.isInteger(r.body.id));
  assert.deepEqual(r.body, { id: r.body.id, delivered: 2 });
  const id = r.body.id;
  for (const p of n1) {
    const [n] = await p;
    assert.deepEqual(n, { id, event: "mention", data: { by: "ann", text: "look" }, ts: n.ts });
    assert.equal(typeof n.ts, "number");
  }
  for (const p of c1) assert.deepEqual((await p)[0], { count: 1 });

  const listed = await tab1.emitWithAck("notifications", {});
  assert.equal(listed.ok, true, JSON.stringify(listed));
  assert.equal(listed.unread, 1);
  assert.equal(listed.notifications.length, 1);
  const [entry] = listed.notifications;
  assert.deepEqual(entry, { id, event: "mention", data: { by: "ann", text: "look" }, ts: entry.ts, read: false });

  // Reading on one tab: the ack after the commit, and both tabs hear the count.
  const c0 = [once(tab1, "unread"), once(tab2, "unread")];
  const read = await tab1.emitWithAck("read", { ids: [id] });
  assert.deepEqual(read, { ok: true, unread: 0 });
  for (const p of c0) assert.deepEqual((await p)[0], { count: 0 });
  assert.equal((await tab2.emitWithAck("notifications", {})).notifications[0].read, true);

  // Two more (the default event is `notification`), then a v1 tab of the user reads them all.
  const ids = [id];
  for (const text of ["second", "third"]) {
    const seen = [once(tab1, "unread"), once(tab2, "unread")];
    const n = await post(first.url, "/api/notify", { to: user, data: { text } });
    assert.equal(n.status, 201);
    assert.ok(n.body.id > ids[ids.length - 1], "ids increase");
    ids.push(n.body.id);
    await Promise.all(seen);
  }
  const byEvent = (await tab2.emitWithAck("notifications", { unread_only: true })).notifications;
  assert.deepEqual(byEvent.map((n) => [n.id, n.event, n.data.text, n.read]), [
    [ids[2], "notification", "third", false],
    [ids[1], "notification", "second", false],
  ]);
  const raw = v1(first, `/ws/${user}`);
  await raw.opened;
  await raw.next((m) => m.op === "welcome");
  const u = await raw.next((m) => m.op === "unread");
  assert.equal(u.count, 2);
  const cleared = [once(tab1, "unread"), once(tab2, "unread")];
  const all = await raw.request({ op: "read", all: true });
  assert.equal(all.op, "ack", JSON.stringify(all));
  assert.equal(all.unread, 0);
  for (const p of cleared) assert.deepEqual((await p)[0], { count: 0 });
  const after = await tab1.emitWithAck("notifications", {});
  assert.deepEqual(after.notifications.map((n) => [n.id, n.read]), [
    [ids[2], true],
    [ids[1], true],
    [ids[0], true],
  ]);
  assert.equal(after.unread, 0);
  assert.deepEqual((await tab1.emitWithAck("notifications", { unread_only: true })).notifications, []);
  const http = await getJson(first, `/api/users/${user}/notifications`);
  assert.equal(http.status, 200);
  assert.deepEqual(http.body, { notifications: after.notifications, unread: 0 });

  tab1.disconnect();
  tab2.disconnect();
  raw.close();
  assert.equal(await first.stop(), 0);

  // After a restart: the same notifications, still read.
  const second = await server({ args });
  const back = sio(second, user);
  assert.deepEqual((await once(back, "unread"))[0], { count: 0 });
  await connected(back);
  const kept = await back.emitWithAck("notifications", {});
  assert.equal(kept.ok, true);
  assert.equal(kept.unread, 0);
  assert.deepEqual(kept.notifications, after.notifications, "kept as they were, read");
  assert.deepEqual(kept.notifications[2].data, { by: "ann", text: "look" });
  // And new ones still count.
  const more = once(back, "unread");
  const n4 = await post(second.url, "/api/notify", { to: user, data: "fourth" });
  assert.equal(n4.status, 201);
  assert.deepEqual(n4.body, { id: n4.body.id, delivered: 1 });
  assert.ok(n4.body.id > ids[2], "ids go on increasing after a restart");
  assert.deepEqual((await more)[0], { count: 1 });
  back.disconnect();
  assert.equal(await second.stop(), 0);
});

// ---------------------------------------------------------------------------------------
// 6. The seeds' chat events

test("seeds' chat: join with a name, chat message, user joined, user left", async () => {
  const a = await connected(sio(main, "seed-a"));
  const b = await connected(sio(main, "seed-b"));
  const c = await connected(sio(main, "seed-c"));
  const aJoined = collect(a, "user joined");
  const bJoined = collect(b, "user joined");

  a.emit("join", "Alice-6");
  assert.deepEqual(await once(b, "user joined"), ["Alice-6"]);
  b.emit("join", "Bob-6");
  assert.deepEqual(await once(a, "user joined"), ["Bob-6"]);
  await sleep(100);
  assert.deepEqual(aJoined, [["Bob-6"]], "the joiner itself does not hear its own join");
  assert.deepEqual(bJoined, [["Alice-6"]]);

  // `join` with an object is still the hub's join.
  const hubJoin = await a.emitWithAck("join", { room: "seed-hub-room" });
  assert.equal(hubJoin.ok, true);
  assert.equal(hubJoin.room, "seed-hub-room");

  // Everyone, the sender included, gets {user, text}; `user` is the joined name, else the user.
  const all = [a, b, c].map((s) => once(s, "chat message"));
  a.emit("chat message", "hello everyone");
  for (const p of all) assert.deepEqual(await p, [{ user: "Alice-6", text: "hello everyone" }]);
  const fromC = [a, b, c].map((s) => once(s, "chat message"));
  c.emit("chat message", "I have no name");
  for (const p of fromC) assert.deepEqual(await p, [{ user: "seed-c", text: "I have no name" }]);

  const err = once(c, "error");
  c.emit("chat message", "");
  const [e] = await err;
  assert.equal(e.code, "bad_request");
  assert.equal(typeof e.message, "string");

  // A named socket leaving is announced; an unnamed one is not.
  const left = collect(b, "user left");
  c.disconnect();
  await sleep(200);
  assert.deepEqual(left, [], "an unnamed socket leaves silently");
  a.disconnect();
  await until(() => left.length === 1);
  await sleep(100);
  assert.deepEqual(left, [["Alice-6"]]);
  b.disconnect();
});

test("seeds' rooms: join-room, room-history, user-joined, send-message, receive-message", async () => {
  const roomId = "seed-room-6";
  const d = await connected(sio(main, "seed-d"));
  const e = await connected(sio(main, "seed-e"));

  const dHistory = once(d, "room-history");
  d.emit("join-room", roomId);
  assert.deepEqual(await dHistory, [[]], "a new room's history is an empty array");
  const dJoined = once(d, "user-joined");
  const eHistory = once(e, "room-history");
  e.emit("join-room", roomId);
  assert.ok(Array.isArray((await eHistory)[0]));
  assert.deepEqual(await dJoined, [e.id], "the others get the joiner's socket id");

  const got = [collect(d, "receive-message"), collect(e, "receive-message")];
  const ack1 = await d.emitWithAck("send-message", { roomId, message: "first" });
  assert.equal(ack1.ok, true, JSON.stringify(ack1));
  assert.ok(Number.isInteger(ack1.seq));
  const ack2 = await e.emitWithAck("send-message", { roomId, message: { text: "an object" } });
  assert.equal(ack2.ok, true);
  assert.ok(ack2.seq > ack1.seq);
  await until(() => got.every((g) => g.length === 2));
  for (const g of got) {
    assert.deepEqual(g, [
      [{ message: "first", senderId: d.id, user: "seed-d" }],
      [{ message: { text: "an object" }, senderId: e.id, user: "seed-e" }],
    ]);
  }
  // Without an ack too.
  const third = once(e, "receive-message");
  d.emit("send-message", { roomId, message: "no ack asked" });
  assert.deepEqual(await third, [{ message: "no ack asked", senderId: d.id, user: "seed-d" }]);

  // A late joiner gets the kept messages, oldest first.
  const f = await connected(sio(main, "seed-f"));
  const fHistory = once(f, "room-history");
  const others = [once(d, "user-joined"), once(e, "user-joined")];
  f.emit("join-room", roomId);
  const [all] = await fHistory;
  assert.ok(Array.isArray(all));
  // (Only the messages here: whether `user-joined` notices are kept is the next test's.)
  const history = all.filter((h) => h.event !== "user-joined");
  assert.deepEqual(
    history.map((h) => ({ room: h.room, event: h.event, message: h.message, senderId: h.senderId, user: h.user, from: h.from })),
    [
      { room: roomId, event: "receive-message", message: "first", senderId: d.id, user: "seed-d", from: "seed-d" },
      { room: roomId, event: "receive-message", message: { text: "an object" }, senderId: e.id, user: "seed-e", from: "seed-e" },
      { room: roomId, event: "receive-message", message: "no ack asked", senderId: d.id, user: "seed-d", from: "seed-d" },
    ],
  );
  assert.deepEqual(history.slice(0, 2).map((h) => h.seq), [ack1.seq, ack2.seq]);
  assert.ok(history[2].seq > ack2.seq);
  for (const h of history) {
    assert.equal(typeof h.ts, "number");
    assert.deepEqual(h.data, { message: h.message, senderId: h.senderId, user: h.user });
  }
  for (const p of others) assert.deepEqual(await p, [f.id]);

  // The seeds' MessageHandler: `message` {type, payload} to the sender's room...
  const msgs = [once(d, "message"), once(e, "message")];
  f.emit("message", { type: "chat", payload: { content: "x" } });
  for (const p of msgs) {
    const [data, meta] = await p;
    assert.deepEqual(data, { type: "chat", payload: { content: "x" } });
    assert.equal(meta.from, "seed-f");
    assert.equal(meta.room, roomId);
  }
  // ...or to payload.to only.
  let eGot = 0;
  e.on("message", () => eGot++);
  const toD = once(d, "message");
  const direct = await f.emitWithAck("message", { type: "chat", payload: { content: "psst", to: "seed-d" } });
  assert.equal(direct.ok, true, JSON.stringify(direct));
  const [dData, dMeta] = await toD;
  assert.deepEqual(dData, { type: "chat", payload: { content: "psst", to: "seed-d" } });
  assert.equal(dMeta.from, "seed-f");
  await sleep(150);
  assert.equal(eGot, 0, "a message with payload.to reaches only that user");

  // A bad message: event `error` {message, code}, and the ack when asked.
  const bad = once(f, "error");
  f.emit("message", { type: "chat", payload: {} });
  assert.deepEqual((await bad)[0], { message: "payload.content is required", code: "bad_request" });
  const badAck = await f.emitWithAck("message", { type: "chat", payload: {}, extra: true });
  assert.deepEqual(badAck, {
    ok: false,
    code: "bad_request",
    message: "`extra` is not a field of a chat message (type, payload)",
  });
  const sysAck = await f.emitWithAck("message", { type: "system", payload: { content: "no" } });
  assert.equal(sysAck.ok, false);
  assert.equal(sysAck.code, "bad_request");
  await sleep(100);
  assert.equal(eGot, 0, "refused messages reach nobody");

  // A room with the `chat` schema takes the seeds' messages too.
  const { status } = await post(main.url, "/api/rooms", { name: "seed-schema-room", schema: "chat" });
  assert.equal(status, 201);
  await f.emitWithAck("join-room", "seed-schema-room");
  const inSchema = await f.emitWithAck("message", { type: "chat", payload: { content: "typed" } });
  assert.equal(inSchema.ok, true, JSON.stringify(inSchema));

  // A mapped publish without an ack callback still hears of its refusal.
  const refused = once(f, "error");
  f.emit("publish", { room: "dm:seed-d", event: "e", data: 1 });
  assert.equal((await refused)[0].code, "bad_request");

  // A socket that joined no room and names nobody has nowhere to send to.
  const g = await connected(sio(main, "seed-g"));
  const nowhere = once(g, "error");
  g.emit("message", { type: "chat", payload: { content: "lost" } });
  assert.equal((await nowhere)[0].code, "bad_request");
  for (const s of [d, e, f, g]) s.disconnect();
});

test("seeds' rooms: room-history lists the room's messages; user-joined notices are not kept", async () => {
  const roomId = "seed-room-notices";
  const h = await connected(sio(main, "seed-h"));
  const i = await connected(sio(main, "seed-i"));
  const hHistory = once(h, "room-history");
  h.emit("join-room", roomId);
  assert.deepEqual(await hHistory, [[]]);
  const iHistory = once(i, "room-history");
  const hJoined = once(h, "user-joined");
  i.emit("join-room", roomId);
  assert.deepEqual(await hJoined, [i.id]);
  assert.deepEqual(await iHistory, [[]], "nothing was said in the room yet: its history is empty");
  const sent = await h.emitWithAck("send-message", { roomId, message: "only this" });
  assert.equal(sent.ok, true);
  const j = await connected(sio(main, "seed-j"));
  const jHistory = once(j, "room-history");
  j.emit("join-room", roomId);
  const [history] = await jHistory;
  assert.deepEqual(
    history.map((m) => [m.event, m.message, m.seq]),
    [["receive-message", "only this", sent.seq]],
    "a late joiner's room-history holds the messages sent, not the announcements of joins",
  );
  // Nor does a hub `join` with `since` replay them.
  const k = await connected(sio(main, "seed-k"));
  const replay = await joinRecording(k, "user-joined", { room: roomId, since: 0 });
  assert.deepEqual(replay.replayed, []);
  for (const s of [h, i, j, k]) s.disconnect();
});

// ---------------------------------------------------------------------------------------
// 7. A seed's chat page

/** Runs the seed page's inline script against a minimal DOM; returns what it shows. */
function openPage(html, url, name) {
  const script = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]).join("\n");
  const shown = [];
  const listeners = {};
  const elements = {
    messages: { appendChild: (li) => shown.push(li.textContent) },
    form: { addEventListener: (type, fn) => (listeners[type] = fn) },
    input: { value: "", focus() {} },
  };
  const document = {
    getElementById: (id) => elements[id],
    createElement: () => ({ textContent: "", className: "" }),
    body: { scrollHeight: 0 },
  };
  const window = { scrollTo() {} };
  let socket;
  const pageIo = (...args) => {
    assert.equal(args.length, 0, "the page calls io() with no arguments");
    socket = io(url, { reconnection: false, forceNew: true });
    clients.push(socket);
    return socket;
  };
  new Function("document", "window", "io", "prompt", script)(document, window, pageIo, () => name);
  return {
    shown,
    socket,
    type(text) {
      elements.input.value = text;
      listeners.submit({ preventDefault() {} });
      assert.equal(elements.input.value, "", "the page clears its input");
    },
  };
}

test("a seed's chat page: served with static_dir, the official client script, and its events", async () => {
  const res = await fetch(page.url + "/");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type"), /^text\/html/);
  const html = await res.text();
  assert.ok(html.includes("Hubbub seed chat fixture"), "GET / is the seed's index.html");
  assert.equal(html, readFileSync(join(SEED_DIR, "index.html"), "utf8"));
  assert.ok(html.includes('<script src="/socket.io/socket.io.js"></script>'));

  for (const file of ["socket.io.js", "socket.io.min.js"]) {
    const r = await fetch(`${page.url}/socket.io/${file}`);
    assert.equal(r.status, 200, file);
    assert.match(r.headers.get("content-type"), /javascript/, file);
    const body = Buffer.from(await r.arrayBuffer());
    assert.ok(body.equals(readFileSync(join(CLIENT_DIST, file))), `${file} is the npm client's file, byte for byte`);
  }
  // The main server serves neither (no static_dir, no socketio_client_dir).
  const plain = await fetch(main.url + "/");
  assert.ok(!(await plain.text()).includes("Hubbub seed chat fixture"));
  assert.notEqual((await fetch(main.url + "/socket.io/socket.io.js")).status, 200);

  // Two pages, as two people would use them.
  const ann = openPage(html, page.url, "Ann-7");
  await connected(ann.socket);
  await ann.socket.emitWithAck("rooms", {}); // a round trip: the page's `join` was handled
  const bob = openPage(html, page.url, "Bob-7");
  await connected(bob.socket);
  await until(() => ann.shown.length === 1);
  assert.deepEqual(ann.shown, ["Bob-7 joined"]);

  ann.type("hi bob");
  await until(() => ann.shown.length === 2 && bob.shown.length === 1);
  bob.type("hey ann");
  await until(() => ann.shown.length === 3 && bob.shown.length === 2);
  bob.socket.disconnect();
  await until(() => ann.shown.length === 4);
  await sleep(100);
  assert.deepEqual(ann.shown, ["Bob-7 joined", "Ann-7: hi bob", "Bob-7: hey ann", "Bob-7 left"]);
  assert.deepEqual(bob.shown, ["Ann-7: hi bob", "Bob-7: hey ann"]);
  ann.socket.disconnect();
});

// ---------------------------------------------------------------------------------------
// 8. Presence for the BFF

test("presence API: users online with their connection counts, a user's devices, logging devices out", async () => {
  const user = "carol-8";
  const start = Date.now();
  const online = async () => (await getJson(main, "/api/users/online")).body;
  const entry = async () => (await online()).users.filter((u) => u.user === user);

  const t1 = await connected(sio(main, user));
  const t2 = await connected(sio(main, user, { transports: ["polling"] }));
  const [mine] = await until(async () => {
    const e = await entry();
    return e.length === 1 && e[0].connections === 2 && e;
  });
  assert.deepEqual(Object.keys(mine).sort(), ["connections", "since", "user"]);
  assert.equal(typeof mine.since, "number");
  assert.ok(mine.since >= start - 1000 && mine.since <= Date.now(), `since ${mine.since}`);
  const list = await online();
  assert.equal(list.count, list.users.length);
  assert.equal(list.users.filter((u) => u.user === user).length, 1, "a user is listed once, not per tab");

  // A v1 connection of the same user: three devices, of both transports.
  const raw = v1(main, `/ws/${user}`);
  await raw.opened;
  const welcome = await raw.next((m) => m.op === "welcome");
  await until(async () => (await entry())[0]?.connections === 3);
  assert.equal((await entry())[0].since, mine.since, "since is the oldest connection's");
  const dev = (await getJson(main, `/api/users/${user}`)).body;
  assert.equal(dev.user, user);
  assert.equal(dev.online, true);
  assert.equal(dev.connections.length, 3);
  assert.deepEqual(dev.connections.map((c) => c.transport).sort(), ["socketio", "socketio", "ws"]);
  for (const c of dev.connections) {
    assert.equal(typeof c.conn, "string");
    assert.equal(typeof c.since, "number");
    assert.ok("address" in c);
  }
  assert.deepEqual(
    dev.connections.filter((c) => c.transport === "socketio").map((c) => c.conn).sort(),
    [t1.id, t2.id].sort(),
    "a Socket.IO device is named by its socket id",
  );
  const ws = dev.connections.find((c) => c.transport === "ws");
  assert.equal(ws.conn, welcome.conn, "a v1 device is named by its welcome's conn");

  // Room presence counts users: carol's second tab joining changes nothing for the others.
  const room = "presence-8";
  const watcher = await connected(sio(main, "watcher-8"));
  await watcher.emitWithAck("join", { room });
  const pres = []; // carol's presence changes, as the watcher hears them
  watcher.on("presence", (p) => (p.joined === user || p.left === user) && pres.push(p));
  await t1.emitWithAck("join", { room });
  await until(() => pres.length === 1);
  assert.deepEqual(pres[0], { room, joined: user, count: 2 });
  await t2.emitWithAck("join", { room });
  assert.equal((await raw.request({ op: "join", room })).op, "ack");
  await sleep(200);
  assert.equal(pres.length, 1, "more tabs of a user who is in already are no presence change");

  // Log out one device, then all but one.
  const closed = once(raw, "close");
  const one = await post(main.url, `/api/users/${user}/disconnect`, { conn: ws.conn });
  assert.deepEqual(one.body, { disconnected: 1 });
  assert.equal((await closed)[0], 4000);
  const gone = once(t2, "disconnect");
  const others = await post(main.url, `/api/users/${user}/disconnect`, { except: t1.id });
  assert.deepEqual(others.body, { disconnected: 1 });
  assert.equal((await gone)[0], "io server disconnect");
  assert.ok(t1.connected);
  await until(async () => (await entry())[0]?.connections === 1);
  await sleep(200);
  assert.equal(pres.length, 1, "still in the room with one tab");

  t1.disconnect();
  await until(async () => (await entry()).length === 0);
  const offline = (await getJson(main, `/api/users/${user}`)).body;
  assert.deepEqual(offline, { user, online: false, connections: [] });
  await until(() => pres.length === 2);
  assert.deepEqual(pres[1], { room, left: user, count: 1 });
  watcher.disconnect();
});
