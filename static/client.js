// Hubbub's JavaScript client (protocol v1), served by the server at /client.js.
// An ES module without dependencies, for browsers and Node (pass `WebSocket` in Node 20).
//
//   import { connect } from "/client.js";
//   const hub = connect("ws://127.0.0.1:3000/ws", { user: "ann" });
//   hub.on("chat", (data, meta) => console.log(meta.from, data));
//   await hub.join("lobby", { history: 20 });
//   await hub.publish("lobby", "chat", "hello");
//
// Requests return promises settled by the server's ack (resolved with its fields) or error
// (rejected with an Error carrying `code`). The client reconnects by itself with exponential
// backoff and jitter, notices a dead link with an application-level ping when the socket has
// been quiet, and after a reconnect joins its rooms again with `since` = the last seq it saw,
// so nothing is missed or repeated.

const RECONNECT_NEVER = new Set([1000, 4000, 4409]);

export class HubbubError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "HubbubError";
    this.code = code;
  }
}

/** Seqs seen in one room: everything up to `mark`, and what came after a gap. */
class Seen {
  constructor(mark) {
    this.mark = mark;
    this.above = new Set();
  }
  /** Takes everything up to `seq` as seen. */
  settle(seq) {
    if (seq <= this.mark) return;
    this.mark = seq;
    for (const s of this.above) if (s <= seq) this.above.delete(s);
    while (this.above.delete(this.mark + 1)) this.mark++;
  }
  /** Records `seq`; false when it was seen already. */
  add(seq) {
    if (seq <= this.mark || this.above.has(seq)) return false;
    this.above.add(seq);
    while (this.above.delete(this.mark + 1)) this.mark++;
    if (this.above.size > 10000) {
      // A gap that never filled: move on rather than grow.
      this.mark = Math.max(...this.above);
      this.above.clear();
    }
    return true;
  }
}

export class HubbubClient {
  constructor(url, opts = {}) {
    this.url = url;
    this.opts = {
      minDelay: 250,
      maxDelay: 15000,
      pingTimeout: 10000,
      requestTimeout: 15000,
      ...opts,
    };
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new Error("no WebSocket: pass { WebSocket } (npm ws) in Node 20");
    /** `connecting`, `online`, `offline` (retrying) or `closed`. */
    this.state = "connecting";
    this.user = null;
    this.conn = null;
    this.unread = 0;
    this.rooms = new Map(); // room -> { seen: Seen | null, opts }
    this.handlers = new Map();
    this.pending = new Map(); // id -> { resolve, reject, timer, frame }
    this.queue = []; // frames waiting to be sent once online
    this.nextId = 1;
    this.attempt = 0;
    this.ws = null;
    this.quietTimer = null;
    this.retryTimer = null;
    this.open();
  }

  /** Calls `fn` for `event`: a message event name (`fn(data, meta)`), or one of `message`,
   * `presence`, `notification`, `unread`, `online`, `offline`, `state`, `welcome`, `error`,
   * `close`. Returns a function that removes the handler. */
  on(event, fn) {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event).add(fn);
    return () => this.handlers.get(event)?.delete(fn);
  }

  emit(event, ...args) {
    for (const fn of this.handlers.get(event) || []) {
      try {
        fn(...args);
      } catch (e) {
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
    if (state === "online" || state === "offline") this.emit(state);
  }

  async open() {
    if (this.state === "closed") return;
    let url = this.url;
    if (this.opts.user) {
      url += (url.includes("?") ? "&" : "?") + "user=" + encodeURIComponent(this.opts.user);
    }
    let protocols;
    const token = typeof this.opts.token === "function" ? await this.opts.token() : this.opts.token;
    if (token) protocols = ["bearer", token];
    let ws;
    try {
      ws = protocols ? new this.WebSocket(url, protocols) : new this.WebSocket(url);
    } catch (e) {
      this.emit("error", e);
      return this.retry();
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
    ws.onerror = () => {};
  }

  receive(raw) {
    this.quiet();
    let m;
    try {
      m = JSON.parse(typeof raw === "string" ? raw : raw.toString());
    } catch {
      return;
    }
    switch (m.op) {
      case "welcome":
        this.user = m.user;
        this.conn = m.conn;
        this.heartbeatMs = m.heartbeat_ms;
        this.attempt = 0;
        this.setState("online");
        this.emit("welcome", m);
        this.resume();
        break;
      case "message":
        this.deliver(m);
        break;
      case "presence":
        this.emit("presence", m);
        break;
      case "notification":
        this.emit("notification", m);
        break;
      case "unread":
        this.unread = m.count;
        this.emit("unread", m.count);
        break;
      case "ack":
      case "error":
      case "pong":
        this.settle(m);
        break;
    }
  }

  /** The room a message belongs to, for resuming: its room, or `dm:{other}` for a kept
   * direct message. */
  roomOf(m) {
    if (m.room) return m.room;
    if (m.to && m.from && m.seq !== undefined) return "dm:" + (m.from === this.user ? m.to : m.from);
    return null;
  }

  deliver(m) {
    const room = this.roomOf(m);
    const joined = room && this.rooms.get(room);
    if (joined && m.seq !== undefined) {
      if (!joined.seen) joined.seen = new Seen(m.seq - 1);
      if (!joined.seen.add(m.seq)) return; // seen already: a replay after a reconnect
    }
    const meta = { room: m.room, from: m.from, to: m.to, seq: m.seq, ts: m.ts };
    this.emit("message", m);
    this.emit(m.event, m.data, meta);
  }

  settle(m) {
    const p = this.pending.get(m.id);
    if (!p) {
      if (m.op === "error") this.emit("error", new HubbubError(m.code, m.message));
      return;
    }
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    if (m.op === "error") p.reject(new HubbubError(m.code, m.message));
    else {
      const { op, id, ...fields } = m;
      p.resolve(fields);
    }
  }

  /** Restarts the quiet timer: after `heartbeat_ms` without a frame, a ping must be answered
   * within `pingTimeout`, or the link is taken for dead and reopened. */
  quiet() {
    clearTimeout(this.quietTimer);
    const every = this.opts.pingInterval || this.heartbeatMs || 25000;
    this.quietTimer = setTimeout(() => {
      if (this.state !== "online") return;
      this.request({ op: "ping" }, this.opts.pingTimeout).catch(() => this.drop(this.ws));
    }, every);
  }

  /** After a welcome: joins the rooms again from where the client was, then sends what was
   * queued while offline. */
  resume() {
    for (const room of this.rooms.keys()) this.sendJoin(room);
    const queued = this.queue.splice(0);
    for (const q of queued) this.transmit(q);
  }

  /** Sends the join of a room the client holds: from the last seq seen when it saw one,
   * else as first asked. Settles the caller's promise, if one waits. */
  sendJoin(room) {
    const r = this.rooms.get(room);
    const frame = { op: "join", room };
    if (r.seen) frame.since = r.seen.mark;
    else if (r.opts.since !== undefined) frame.since = r.opts.since;
    else if (r.opts.history !== undefined) frame.history = r.opts.history;
    this.request(frame).then(
      (ack) => {
        this.joined(room, ack);
        r.waiting?.resolve(ack);
        r.waiting = null;
      },
      (e) => {
        if (e.code === "offline") return; // sent again at the next welcome
        if (this.rooms.get(room) === r) this.rooms.delete(room);
        if (r.waiting) r.waiting.reject(e);
        else this.emit("error", e);
        r.waiting = null;
      },
    );
  }

  joined(room, ack) {
    const r = this.rooms.get(room);
    if (!r) return;
    // Everything up to the ack's seq was replayed, or does not exist (a gap, or numbering
    // that jumped after a server crash): seqs after it are the ones to expect.
    if (ack.seq !== undefined) {
      if (!r.seen) r.seen = new Seen(ack.seq);
      else r.seen.settle(ack.seq);
    }
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.emit("close", { code, reason });
    if (code === 4401) this.emit("error", new HubbubError("unauthorized", reason || "token expired"));
    if (RECONNECT_NEVER.has(code) || this.state === "closed") {
      this.failPending("closed");
      this.setState("closed");
      return;
    }
    this.drop(ws);
  }

  drop(ws) {
    if (ws !== this.ws) return;
    this.ws = null;
    clearTimeout(this.quietTimer);
    try {
      ws.onclose = null;
      ws.close();
    } catch {}
    this.failPending("offline");
    this.retry();
  }

  failPending(code) {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      // Joins are made again at the next welcome; other requests are the caller's to retry.
      p.reject(new HubbubError(code, `the connection is ${code}`));
      this.pending.delete(id);
    }
  }

  retry() {
    if (this.state === "closed") return;
    this.setState("offline");
    const cap = Math.min(this.opts.maxDelay, this.opts.minDelay * 2 ** this.attempt);
    this.attempt++;
    const delay = Math.random() * cap; // full jitter
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      this.setState("connecting");
      this.open();
    }, delay);
  }

  transmit(q) {
    this.pending.set(q.frame.id, q);
    q.timer = setTimeout(() => {
      this.pending.delete(q.frame.id);
      q.reject(new HubbubError("timeout", "no answer from the server"));
    }, q.timeout);
    this.ws.send(JSON.stringify(q.frame));
  }

  /** Sends `frame` with a fresh id; resolves with the ack's fields (or the pong). Frames
   * made while offline wait for the connection. */
  request(frame, timeout = this.opts.requestTimeout) {
    return new Promise((resolve, reject) => {
      const q = { frame: { ...frame, id: this.nextId++ }, resolve, reject, timeout };
      if (this.state === "closed") reject(new HubbubError("closed", "the client is closed"));
      else if (this.state === "online" && this.ws) this.transmit(q);
      else this.queue.push(q);
    });
  }

  /** Joins `room`, replaying `{history: n}` latest or everything after `{since: seq}`;
   * resolves with the ack. Joined again by itself after a reconnect, from the last seq seen. */
  join(room, opts = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === "closed") return reject(new HubbubError("closed", "the client is closed"));
      this.rooms.set(room, { seen: null, opts, waiting: { resolve, reject } });
      if (this.state === "online" && this.ws) this.sendJoin(room);
    });
  }

  leave(room) {
    this.rooms.delete(room);
    return this.request({ op: "leave", room });
  }

  publish(room, event, data = null, opts = {}) {
    return this.request({ op: "publish", room, event, data, ...opts });
  }

  send(to, event, data = null) {
    return this.request({ op: "send", to, event, data });
  }

  broadcast(event, data = null) {
    return this.request({ op: "broadcast", event, data });
  }

  notifications(opts = {}) {
    return this.request({ op: "notifications", ...opts });
  }

  /** Marks notifications read: `{ids: [...]}` or `{all: true}`. */
  read(marks) {
    return this.request({ op: "read", ...marks });
  }

  close() {
    this.state = "closed";
    clearTimeout(this.quietTimer);
    clearTimeout(this.retryTimer);
    this.failPending("closed");
    for (const q of this.queue.splice(0)) q.reject(new HubbubError("closed", "the client is closed"));
    for (const r of this.rooms.values()) r.waiting?.reject(new HubbubError("closed", "the client is closed"));
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close(1000);
      this.ws = null;
    }
    this.emit("state", "closed");
  }
}

/** Connects to Hubbub's `/ws` endpoint at `url` (`ws://` or `wss://`). Options: `user` (auth
 * mode none), `token` (a string, or a function returning one, sent as the `bearer`
 * sub-protocol), `WebSocket` (an implementation, in Node 20), `minDelay`/`maxDelay` (the
 * reconnect backoff, ms), `pingInterval`/`pingTimeout`, `requestTimeout`. */
export function connect(url, opts) {
  return new HubbubClient(url, opts);
}
