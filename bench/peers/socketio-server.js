// The Node socket.io peer: clients `join` {room} and `publish` {room, event, data}; the
// server emits `data` to the room (the sender included). `send` {event, data} answers the
// sender alone (the echo scenario). WebSocket and polling, no compression. With REDIS_URL,
// the server is one node of a cluster through @socket.io/redis-adapter (bench/cluster.sh);
// with REDIS_SHARDED=1 too, through its sharded flavour (createShardedAdapter, Redis 7).
"use strict";
const { Server } = require("socket.io");
const port = Number(process.env.PORT || 3002);

async function main() {
  const opts = { perMessageDeflate: false, serveClient: false };
  if (process.env.REDIS_URL) {
    const { createClient } = require("redis");
    const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
    const pub = createClient({ url: process.env.REDIS_URL });
    const sub = pub.duplicate();
    await Promise.all([pub.connect(), sub.connect()]);
    const create = process.env.REDIS_SHARDED === "1" ? createShardedAdapter : createAdapter;
    opts.adapter = create(pub, sub);
  }
  const io = new Server(port, opts);
  io.on("connection", (socket) => {
    socket.on("join", (a) => socket.join(a.room));
    socket.on("publish", (a) => io.to(a.room).emit(a.event, a.data));
    socket.on("send", (a) => socket.emit(a.event, a.data));
  });
  console.log(`socketio-server listening on ${port}`);
}
main();
