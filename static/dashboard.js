// The dashboard (/dashboard): the server's figures, sent once a second to the room
// `hubbub:stats` while someone listens, drawn as numbers and sparklines (no chart library:
// everything a page needs ships inside the binary).
import { connect } from "/client.js";

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const POINTS = 120;

/** Each card: its title, and how to read its value from a sample and the one before it. */
const CARDS = [
  ["connections", "Connections", (s) => s.connections.total],
  ["ws", "WebSocket (v1)", (s) => s.connections.ws],
  ["socketio", "Socket.IO", (s) => s.connections.socketio],
  ["users", "Users online", (s) => s.users_online],
  ["rooms", "Rooms", (s) => s.rooms],
  ["in", "Messages in / s", (s, p) => rate(s, p, "messages_in")],
  ["out", "Messages out / s", (s, p) => rate(s, p, "messages_out")],
  ["slow", "Slow-consumer closes", (s) => s.slow_consumer_closes],
  ["reaped", "Heartbeat reaps", (s) => s.heartbeat_reaped],
];
const series = new Map(CARDS.map(([id]) => [id, []]));
let previous = null;

function rate(s, p, key) {
  if (!p) return 0;
  const secs = Math.max((s.ts - p.ts) / 1000, 0.001);
  return Math.max(0, Math.round((s[key] - p[key]) / secs));
}

const svgNs = "http://www.w3.org/2000/svg";
for (const [id, title] of CARDS) {
  const card = document.createElement("section");
  card.className = "card";
  card.setAttribute("aria-labelledby", `t-${id}`);
  card.innerHTML = `<h2 id="t-${id}">${title}</h2><div class="value" id="v-${id}" data-testid="${id}">–</div>`;
  const svg = document.createElementNS(svgNs, "svg");
  svg.setAttribute("viewBox", `0 0 ${POINTS} 40`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(svgNs, "polyline");
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "#0b5cad");
  line.setAttribute("stroke-width", "1.5");
  line.id = `l-${id}`;
  svg.append(line);
  card.append(svg);
  $("cards").append(card);
}

function draw(id, values) {
  const max = Math.max(1, ...values);
  const pts = values.map((v, i) => `${i + POINTS - values.length},${38 - (v / max) * 36}`).join(" ");
  $(`l-${id}`).setAttribute("points", pts);
}

function rows(tbody, list, first, second) {
  $(tbody).replaceChildren(
    ...list.map((r) => {
      const tr = document.createElement("tr");
      for (const v of [r.room, r[first], r[second]]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}

const hub = connect(wsUrl, { user: `dashboard-${Math.random().toString(36).slice(2, 8)}` });
hub.on("state", (state) => {
  $("status").dataset.state = state;
  $("status").textContent = state;
});
hub.on("stats", (s) => {
  $("node").textContent = `(node ${s.node})`;
  for (const [id, , read] of CARDS) {
    const v = read(s, previous);
    $(`v-${id}`).textContent = v.toLocaleString();
    const list = series.get(id);
    list.push(v);
    if (list.length > POINTS) list.shift();
    draw(id, list);
  }
  rows("top-members", s.top_by_members, "members", "messages");
  rows("top-traffic", s.top_by_traffic, "messages", "members");
  // In a cluster: the live nodes, this one marked.
  const clustered = Array.isArray(s.nodes);
  $("cluster-nodes").hidden = !clustered;
  $("nodes-table").hidden = !clustered;
  if (clustered) {
    // Other nodes as their last heartbeat says; this one as it is now.
    const named = s.nodes.map((n) =>
      n.node === s.node
        ? { room: `${n.node} (this node)`, connections: s.connections.total, users_online: s.users_online }
        : { ...n, room: n.node },
    );
    rows("nodes", named, "connections", "users_online");
  }
  previous = s;
});
hub.join("hubbub:stats").catch((e) => {
  $("status").textContent = `cannot read the figures: ${e.message}`;
});
