// The Node `ws` peer: on `/echo` every message goes back to its sender; on any other path
// every message a client sends is sent to every connected client (the sender included), as
// in the ws README's broadcast example. No compression, unless DEFLATE=1: then
// permessage-deflate with ws's defaults (messages of 1 KiB or more compressed, each
// recipient compressing for itself).
"use strict";
const { WebSocketServer, WebSocket } = require("ws");
const port = Number(process.env.PORT || 3001);
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: process.env.DEFLATE === "1" });
wss.on("connection", (ws, req) => {
  ws.on("error", () => {});
  if (req.url === "/echo") {
    ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
    return;
  }
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, { binary: isBinary });
    }
  });
});
wss.on("listening", () => console.log(`ws-broadcast listening on ${port}`));
