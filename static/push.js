// The push page (/push): the seeds' single-user push demo. This tab connects as one user;
// `POST /rest/message` pushes to every connection of another, or says it is offline.
import { connect } from "/client.js";

const $ = (id) => document.getElementById(id);
const wsUrl = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
let hub = null;

$("who").addEventListener("submit", (e) => {
  e.preventDefault();
  hub?.close();
  const me = $("me").value;
  hub = connect(wsUrl, { user: me });
  hub.on("state", (state) => {
    $("status").dataset.state = state;
    $("status").textContent = state === "online" ? `online as ${me}` : state;
  });
  hub.on("message", (m) => {
    if (m.event !== "message" || !m.data || typeof m.data !== "object") return;
    const li = document.createElement("li");
    li.textContent = `${m.data.from}: ${typeof m.data.content === "string" ? m.data.content : JSON.stringify(m.data.content)}`;
    $("inbox").prepend(li);
  });
  $("push").hidden = false;
  for (const o of $("to").options) o.disabled = o.value === me;
  if ($("to").value === me) $("to").selectedIndex = [...$("to").options].findIndex((o) => !o.disabled);
  $("content").focus();
});

$("push").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { from: $("me").value, to: $("to").value, content: $("content").value };
  const result = $("result");
  result.className = "";
  try {
    const r = await fetch("/rest/message", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const answer = await r.json();
    if (answer.succeed) {
      result.textContent = `sent to ${body.to}`;
      $("content").value = "";
    } else {
      result.className = "error";
      result.textContent = answer.msg ? `recipient offline: ${answer.msg}` : answer.error?.message || "not sent";
    }
  } catch (err) {
    result.className = "error";
    result.textContent = `not sent: ${err.message}`;
  }
});
