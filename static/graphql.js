// The GraphQL explorer: one graphql-transport-ws connection per run, results listed as
// they come.
const $ = (id) => document.getElementById(id);
const status = $("status");
let socket = null;
let next = 1;

function show(text, kind = "result") {
  const li = document.createElement("li");
  li.className = kind;
  const pre = document.createElement("pre");
  pre.textContent = text;
  li.append(pre);
  $("results").prepend(li);
}

function setState(state, text) {
  status.dataset.state = state;
  status.textContent = text;
  $("stop").disabled = state !== "online";
}

function run(query, variables) {
  if (socket) socket.close(1000);
  const url = location.origin.replace(/^http/, "ws") + "/graphql";
  const ws = new WebSocket(url, "graphql-transport-ws");
  socket = ws;
  const id = String(next++);
  ws.onopen = () => {
    const payload = {};
    if ($("user").value) payload.user = $("user").value;
    if ($("token").value) payload.token = $("token").value;
    ws.send(JSON.stringify({ type: "connection_init", payload }));
  };
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.type === "connection_ack") {
      setState("online", "running");
      ws.send(JSON.stringify({ type: "subscribe", id, payload: { query, variables } }));
    } else if (m.type === "ping") {
      ws.send(JSON.stringify({ type: "pong" }));
    } else if (m.type === "next") {
      show(JSON.stringify(m.payload, null, 2));
    } else if (m.type === "error") {
      show(JSON.stringify(m.payload, null, 2), "error");
    } else if (m.type === "complete") {
      ws.close(1000);
    }
  };
  ws.onclose = (e) => {
    if (socket === ws) socket = null;
    setState("offline", e.code === 1000 ? "done" : `closed (${e.code} ${e.reason})`);
  };
}

$("run").addEventListener("submit", (e) => {
  e.preventDefault();
  let variables;
  try {
    variables = JSON.parse($("variables").value || "{}");
  } catch (err) {
    show(`The variables are not JSON: ${err.message}`, "error");
    return;
  }
  run($("query").value, variables);
});

$("stop").addEventListener("click", () => socket?.close(1000));

$("schema").addEventListener("click", () => {
  run("{ __schema { queryType { name } types { name kind fields { name type { name kind ofType { name } } } } } }", {});
});
