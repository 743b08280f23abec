// The chat page (/): rooms with history, who is online, typing, direct messages and the
// notification bell, on /client.js.
import { connect } from "/client.js";

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

let hub = null;
let me = "";
/** The open conversation: a room, or a direct conversation with a user. */
let current = { kind: "room", name: "lobby" };
const logs = new Map(); // "room:x" / "dm:user" -> [{from, text, ts}]
const joined = new Set();
const typing = new Map(); // user -> timer
let lastTyping = 0;

const keyOf = (c) => `${c.kind}:${c.name}`;
const roomOf = (c) => (c.kind === "room" ? c.name : `dm:${c.name}`);
const textOf = (data) => (typeof data === "string" ? data : data?.text ?? JSON.stringify(data));

function el(tag, props = {}, ...children) {
  const e = Object.assign(document.createElement(tag), props);
  for (const c of children) e.append(c);
  return e;
}

function setStatus(state) {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = { online: `online as ${me}`, offline: "offline, reconnecting…", connecting: "connecting…", closed: "disconnected" }[state] || state;
}

function log(key) {
  if (!logs.has(key)) logs.set(key, []);
  return logs.get(key);
}

function add(key, entry) {
  log(key).push(entry);
  if (key === keyOf(current)) render(entry);
}

function render(entry) {
  const list = $("messages");
  const li = entry.note
    ? el("li", { className: "note" }, entry.note)
    : el(
        "li",
        {},
        el("span", { className: "who" }, entry.from || "server"),
        el("time", { dateTime: new Date(entry.ts).toISOString() }, new Date(entry.ts).toLocaleTimeString()),
        el("div", { className: "text" }, entry.text),
      );
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

async function open(conv) {
  current = conv;
  $("title").textContent = conv.kind === "room" ? conv.name : `Direct messages with ${conv.name}`;
  $("messages").replaceChildren();
  $("typing").textContent = "";
  for (const entry of log(keyOf(conv))) render(entry);
  markLists();
  if (conv.kind === "dm") readConversation(conv.name);
  const room = roomOf(conv);
  if (!joined.has(room)) {
    joined.add(room);
    try {
      await hub.join(room, { history: 50 });
    } catch (e) {
      joined.delete(room);
      add(keyOf(conv), { note: `could not join: ${e.message}` });
    }
  }
  $("text").focus();
}

function markLists() {
  for (const b of document.querySelectorAll("#rooms button, #online button")) {
    b.setAttribute("aria-current", String(b.dataset.key === keyOf(current)));
  }
}

async function loadRooms() {
  const { rooms } = await hub.request({ op: "rooms" });
  const names = rooms.map((r) => r.name).filter((n) => !n.startsWith("dm:") && !n.startsWith("hubbub:"));
  if (!names.includes("lobby")) names.unshift("lobby");
  $("rooms").replaceChildren(
    ...names.map((name) => {
      const b = el("button", { type: "button", onclick: () => open({ kind: "room", name }) }, name);
      b.dataset.key = `room:${name}`;
      return el("li", {}, b);
    }),
  );
  markLists();
}

async function loadOnline() {
  const { users, count } = await hub.request({ op: "online" });
  $("online-count").textContent = count;
  $("online").replaceChildren(
    ...users.map((u) => {
      const b = el("button", { type: "button" }, `${u.user}${u.connections > 1 ? ` (${u.connections} tabs)` : ""}`);
      b.dataset.key = `dm:${u.user}`;
      if (u.user === me) b.disabled = true;
      else b.onclick = () => open({ kind: "dm", name: u.user });
      return el("li", {}, b);
    }),
  );
  markLists();
}

function showTyping() {
  const names = [...typing.keys()];
  $("typing").textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
}

async function refreshNotes() {
  const { notifications } = await hub.notifications({ limit: 50 });
  $("notes").replaceChildren(
    ...notifications.map((n) => {
      const what = n.event === "dm" ? `Direct message from ${n.data?.from}` : `${n.event}: ${textOf(n.data)}`;
      const li = el("li", { className: n.read ? "" : "unread" }, `${what} `);
      if (!n.read) {
        li.append(
          el("button", { className: "quiet", type: "button", onclick: async () => { await hub.read({ ids: [n.id] }); refreshNotes(); } }, "Mark read"),
        );
      }
      return li;
    }),
  );
}

/** Marks read the notifications of direct messages from `user` (the conversation is open). */
async function readConversation(user, ids) {
  if (!ids) {
    const { notifications } = await hub.notifications({ unread_only: true, limit: 500 });
    ids = notifications.filter((n) => n.event === "dm" && n.data?.from === user).map((n) => n.id);
  }
  if (ids.length) await hub.read({ ids });
}

function showUnread(n) {
  $("badge").textContent = n;
  $("badge").hidden = n === 0;
  $("badge-label").textContent = `${n} unread`;
}

function start(name) {
  me = name;
  hub = connect(wsUrl, { user: me });
  hub.on("state", setStatus);
  hub.on("online", () => {
    loadRooms().catch(() => {});
    loadOnline().catch(() => {});
  });
  hub.on("message", (m) => {
    if (m.event === "typing") {
      if (!m.room || m.room !== roomOf(current) || m.from === me) return;
      clearTimeout(typing.get(m.from));
      typing.set(m.from, setTimeout(() => { typing.delete(m.from); showTyping(); }, 3000));
      showTyping();
      return;
    }
    if (m.event !== "chat") return;
    const key = m.room ? `room:${m.room}` : `dm:${m.from === me ? m.to : m.from}`;
    if (!m.room && !m.to) return; // a push to the user without a conversation
    if (m.from && typing.has(m.from)) {
      clearTimeout(typing.get(m.from));
      typing.delete(m.from);
      showTyping();
    }
    add(key, { from: m.from, text: textOf(m.data), ts: m.ts });
  });
  hub.on("presence", () => loadOnline().catch(() => {}));
  hub.on("unread", showUnread);
  hub.on("notification", (n) => {
    // A direct message in the open conversation is read as it arrives.
    if (n.event === "dm" && current.kind === "dm" && n.data?.from === current.name) {
      readConversation(current.name, [n.id]).catch(() => {});
    }
    if (!$("panel").hidden) refreshNotes();
  });
  $("login").hidden = true;
  $("app").hidden = false;
  $("bell").hidden = false;
  open({ kind: "room", name: "lobby" });
  // Rooms made by others, people who left: the lists catch up every few seconds.
  setInterval(() => {
    if (hub.state !== "online") return;
    loadOnline().catch(() => {});
    loadRooms().catch(() => {});
  }, 5000);
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const name = $("name").value.trim();
  if (name) start(name);
});

$("say").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try {
    if (current.kind === "room") {
      await hub.publish(current.name, "chat", { text });
    } else {
      const ack = await hub.send(current.name, "chat", { text });
      // Kept conversations come back to this tab as a member; otherwise show it here.
      if (ack.seq === undefined) add(keyOf(current), { from: me, text, ts: Date.now() });
    }
  } catch (err) {
    add(keyOf(current), { note: `not sent (${err.code}): ${err.message}` });
  }
});

$("text").addEventListener("input", () => {
  const now = Date.now();
  if (current.kind !== "room" || now - lastTyping < 2000 || !$("text").value) return;
  lastTyping = now;
  hub.publish(current.name, "typing", null, { exclude_self: true, transient: true, volatile: true }).catch(() => {});
});

$("new-room").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("room-name").value.trim();
  if (!name) return;
  try {
    await hub.request({ op: "create_room", room: name });
  } catch (err) {
    if (err.code !== "room_exists") return add(keyOf(current), { note: `could not create ${name}: ${err.message}` });
  }
  $("room-name").value = "";
  await loadRooms();
  open({ kind: "room", name });
});

$("bell").addEventListener("click", async () => {
  const panel = $("panel");
  // Below the header, however many lines it wrapped to (a phone).
  panel.style.top = `${document.querySelector("header").getBoundingClientRect().bottom + 4}px`;
  panel.hidden = !panel.hidden;
  $("bell").setAttribute("aria-expanded", String(!panel.hidden));
  if (!panel.hidden) {
    await refreshNotes();
    $("read-all").focus();
  }
});

$("read-all").addEventListener("click", async () => {
  await hub.read({ all: true });
  refreshNotes();
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && !$("panel").hidden) {
    $("panel").hidden = true;
    $("bell").setAttribute("aria-expanded", "false");
    $("bell").focus();
  }
});
