// The Node socket.io peer: clients `join` {room} and `publish` {room, event, data}; the
// server emits `data` to the room (the sender included). `send` {event, data} answers the
// sender alone (the echo scenario). WebSocket and polling, no compression.
"use strict";
const { Server } = require("socket.io");
const port = Number(process.env.PORT || 3002);
const io = new Server(port, { perMessageDeflate: false, serveClient: false });
io.on("connection", (socket) => {
  socket.on("join", (a) => socket.join(a.room));
  socket.on("publish", (a) => io.to(a.room).emit(a.event, a.data));
  socket.on("send", (a) => socket.emit(a.event, a.data));
});
console.log(`socketio-server listening on ${port}`);
