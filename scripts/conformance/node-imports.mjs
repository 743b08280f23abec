// Replaces a Socket.IO/Engine.IO test suite's node-imports.js when run by
// scripts/socketio-conformance. The suites register a one-shot "message" listener,
// await it, then register the next; when a server writes several frames in one TCP
// segment (Hubbub coalesces writes), `ws` emits them in one tick and the suite misses
// all but the first. This WebSocket hands the suite one message (or close) per
// macrotask, in order, which is how frames from separate reads arrive anyway.
import fetch from "node-fetch";
import { WebSocket as WsWebSocket } from "ws";
import chai from "chai";
import chaiString from "chai-string";

chai.use(chaiString);

class OneFrameAtATime extends WsWebSocket {
  emit(event, ...args) {
    if (event !== "message" && event !== "close") {
      return super.emit(event, ...args);
    }
    if (this._busy) {
      // Arrived in the same tick as an earlier frame: hand it over later, in order.
      this._pending.push([event, args]);
      return true;
    }
    // A lone frame is delivered at once, as plain `ws` would.
    this._busy = true;
    this._pending = [];
    super.emit(event, ...args);
    const next = () => {
      const item = this._pending.shift();
      if (!item) {
        this._busy = false;
        return;
      }
      super.emit(item[0], ...item[1]);
      setTimeout(next, 0);
    };
    setTimeout(next, 0);
    return true;
  }
}

globalThis.fetch = fetch;
globalThis.WebSocket = OneFrameAtATime;
globalThis.chai = chai;
