// The admin UI's protocol (`/admin`, as npm `@socket.io/admin-ui`'s `instrument()` serves it)
// driven with socket.io-client the way the UI drives it: basic auth and sessions, the
// socket and room feeds, server stats, and the emit, join, leave and disconnect actions on
// Socket.IO sockets and v1 connections alike. (tests/browser/admin.test.mjs runs the UI
// itself.)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, v1Client, once } from "./server.mjs";

// The password is "hubbub-admin"; this is its Argon2 hash, as `admin_password` takes it.
const HASH = "$argon2id$v=19$m=8192,t=1,p=1$RnbbI+0IzQJsA1jLEPhPbg$tw98Bkg9yt+gRWQYlQ1FKO4PfAKhNclbGpJCPpiS47U";
const CREDS = { username: "admin", password: "hubbub-admin" };

let server;
const closers = [];

before(async () => {
  server = await startServer({ args: ["--store", "memory", "--admin-ui", "on", "--admin-password", HASH] });
});

after(async () => {
  for (const c of closers) c();
  await server?.stop();
});

/** An admin UI connection that records every event it gets. */
function admin(auth = CREDS) {
  const s = io(server.url + "/admin", { auth, reconnection: false, forceNew: true, transports: ["websocket"] });
  closers.push(() => s.disconnect());
  s.seen = [];
  s.onAny((event, ...args) => s.seen.push([event, ...args]));
  /** Resolves with the args of the first event named `event` (seen or to come) passing `pred`. */
  s.until = (event, pred = () => true, ms = 5000) =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${event}`)), ms);
      const check = () => {
        const hit = s.seen.find(([e, ...a]) => e === event && pred(...a));
        if (hit) {
          clearTimeout(t);
          s.offAny(check);
          resolve(hit.slice(1));
        }
      };
      s.onAny(check);
      check();
    });
  return s;
}

function sioClient(user, nsp = "/") {
  const s = io(server.url + nsp, { auth: { user }, reconnection: false, forceNew: true });
  closers.push(() => s.disconnect());
  return s;
}

async function v1(user) {
  const ws = v1Client(`${server.wsUrl}/ws/${user}`);
  closers.push(() => ws.terminate());
  const welcome = await ws.next((m) => m.op === "welcome");
  return { ws, conn: welcome.conn };
}

test("a wrong password or user name is refused; a session id logs in again without one", async () => {
  for (const auth of [{ username: "admin", password: "nope" }, { username: "root", password: "hubbub-admin" }, {}]) {
    const bad = admin(auth);
    const [err] = await once(bad, "connect_error");
    assert.match(err.message, /invalid credentials/);
  }
  const good = admin();
  const [session] = await good.until("session");
  assert.equal(typeof session, "string");
  const [config] = await good.until("config");
  assert.ok(config.supportedFeatures.includes("DISCONNECT"));
  const again = admin({ sessionId: session });
  await once(again, "connect");
  const forged = admin({ sessionId: "not-a-session" });
  await once(forged, "connect_error");
});

test("the feeds show v1 and Socket.IO connections, their rooms, and server stats", async () => {
  const ui = admin();
  const [all] = await ui.until("all_sockets");
  assert.ok(Array.isArray(all));
  const [stats] = await ui.until("server_stats");
  assert.equal(stats.pid, server.pid());
  assert.ok(stats.namespaces.some((n) => n.name === "/admin" && n.socketsCount >= 1));

  const { ws, conn } = await v1("v1-fed");
  const [v1Socket] = await ui.until("socket_connected", (s) => s.id === conn);
  assert.equal(v1Socket.nsp, "/");
  assert.equal(v1Socket.data.user, "v1-fed");
  assert.equal(v1Socket.data.protocol, "v1");
  assert.deepEqual(v1Socket.rooms, [conn]);

  const sock = sioClient("sio-fed");
  await once(sock, "connect");
  const [sioSocket] = await ui.until("socket_connected", (s) => s.id === sock.id);
  assert.equal(sioSocket.data.user, "sio-fed");
  // socket.io-client starts on polling, then upgrades: the UI is told.
  assert.equal(sioSocket.transport, "polling");
  assert.equal(sioSocket.handshake.query.EIO, "4");
  assert.match(sioSocket.handshake.url, /^\/socket\.io\/\?EIO=4&transport=polling/);
  const [updated] = await ui.until("socket_updated", (u) => u.id === sock.id);
  assert.deepEqual(updated, { id: sock.id, nsp: "/", transport: "websocket" });

  await ws.request({ op: "join", room: "fed-room" });
  await ui.until("room_joined", (nsp, room, id) => nsp === "/" && room === "fed-room" && id === conn);
  await sock.emitWithAck("join", { room: "fed-room" });
  await ui.until("room_joined", (nsp, room, id) => room === "fed-room" && id === sock.id);
  await ws.request({ op: "leave", room: "fed-room" });
  await ui.until("room_left", (nsp, room, id) => room === "fed-room" && id === conn);

  // A fresh UI lists both, with the Socket.IO one still in the room.
  const late = admin();
  const [list] = await late.until("all_sockets");
  assert.deepEqual(list.find((s) => s.id === conn).rooms, [conn]);
  assert.deepEqual(list.find((s) => s.id === sock.id).rooms.sort(), [sock.id, "fed-room"].sort());

  // Stats count what happened since the last ones.
  const [counted] = await ui.until("server_stats", (s) => s.aggregatedEvents.some((e) => e.type === "rawConnection"), 6000);
  assert.ok(counted.clientsCount >= 2);

  const id = sock.id; // (socket.io-client forgets it on disconnect)
  sock.disconnect();
  await ui.until("socket_disconnected", (nsp, gone) => nsp === "/" && gone === id);
});

test("emit, join and leave act on a socket, a room, or the whole namespace", async () => {
  const ui = admin();
  await once(ui, "connect");
  const { ws, conn } = await v1("v1-acted");
  const sock = sioClient("sio-acted");
  await once(sock, "connect");

  // Join by socket id: the v1 connection is then in the room, as the hub sees it.
  ui.emit("join", "/", "acted-room", conn);
  await ui.until("room_joined", (nsp, room, id) => room === "acted-room" && id === conn);
  ui.emit("join", "/", "acted-room", sock.id);
  await ui.until("room_joined", (nsp, room, id) => room === "acted-room" && id === sock.id);
  const info = await (await fetch(`${server.url}/api/rooms/acted-room`)).json();
  assert.equal(info.members, 2);

  // Emit to the room: both get it, each in its own protocol.
  const got = once(sock, "admin-says");
  ui.emit("emit", "/", "acted-room", "admin-says", { hello: 1 }, "two");
  assert.deepEqual(await got, [{ hello: 1 }, "two"]);
  const frame = await ws.next((m) => m.event === "admin-says");
  assert.equal(frame.op, "message");

  // Leave by room: both leave; a later emit to the room reaches nobody.
  ui.emit("leave", "/", "acted-room", "acted-room");
  await ui.until("room_left", (nsp, room, id) => room === "acted-room" && id === conn);
  await ui.until("room_left", (nsp, room, id) => room === "acted-room" && id === sock.id);
  const r = await fetch(`${server.url}/api/rooms/acted-room`);
  if (r.ok) assert.equal((await r.json()).members, 0);
  else assert.equal(r.status, 404);

  // No filter: the whole namespace.
  const everyone = once(sock, "to-all");
  ui.emit("emit", "/", null, "to-all", 3);
  assert.deepEqual(await everyone, [3]);
  assert.equal((await ws.next((m) => m.event === "to-all")).data, 3);
});

test("disconnect closes the socket it names and nothing else", async () => {
  const ui = admin();
  await once(ui, "connect");
  const a = await v1("v1-kept");
  const b = await v1("v1-closed");
  const kept = sioClient("sio-kept");
  const other = sioClient("sio-closed");
  await Promise.all([once(kept, "connect"), once(other, "connect")]);

  const closed = once(b.ws, "close");
  ui.emit("_disconnect", "/", false, b.conn);
  assert.equal((await closed)[0], 4000);

  const gone = once(other, "disconnect");
  ui.emit("_disconnect", "/", false, other.id);
  assert.equal((await gone)[0], "io server disconnect");

  assert.equal(a.ws.readyState, a.ws.OPEN);
  assert.equal(kept.connected, true);
  a.ws.send(JSON.stringify({ op: "ping", id: 7 }));
  await a.ws.next((m) => m.op === "pong");
});
