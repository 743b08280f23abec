// The Node socket.io peer: clients `join` a room and `publish` {room, event, data} to it;
// the server emits the data to the room (the sender included). WebSocket and polling, no
// compression.
"use strict";
const { Server } = require("socket.io");
const port = Number(process.env.PORT || 3002);
const io = new Server(port, { perMessageDeflate: false, serveClient: false });
io.on("connection", (socket) => {
  socket.on("join", (a) => socket.join(a.room));
  socket.on("publish", (a) => io.to(a.room).emit(a.event, a.data));
});
console.log(`socketio-server listening on ${port}`);
