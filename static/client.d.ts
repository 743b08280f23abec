// Type declarations for Hubbub's JavaScript client (/client.js).

/** What a delivered message says besides its data. */
export interface MessageMeta {
  /** The room it was published to (absent for a message to a user). */
  room?: string;
  /** The sender's user id (absent when the server's API sent it without one). */
  from?: string;
  /** The addressee of a direct message kept in history. */
  to?: string;
  /** Its number in a room (or conversation) that keeps history. */
  seq?: number;
  /** Milliseconds since the epoch. */
  ts: number;
}

/** A `message` frame as the server sends it. */
export interface Message extends MessageMeta {
  op: "message";
  event: string;
  data: unknown;
}

export interface Presence {
  op: "presence";
  room: string;
  joined?: string;
  left?: string;
  /** Users (not connections) in the room after the change. */
  count: number;
}

export interface Notification {
  id: number;
  event: string;
  data: unknown;
  ts: number;
  read?: boolean;
}

export interface JoinAck {
  room: string;
  /** The room's last seq, for a room that keeps history. */
  seq?: number;
  /** Users in the room. */
  members: number;
  /** Part of the asked-for history was no longer kept. */
  gap?: boolean;
}

export type State = "connecting" | "online" | "offline" | "closed";

export interface Options {
  /** The user, in the server's auth mode `none`. */
  user?: string;
  /** A token (or a function giving a fresh one for each connection), sent as the `bearer`
   * WebSocket sub-protocol. */
  token?: string | (() => string | Promise<string>);
  /** A WebSocket implementation (the npm `ws` package in Node 20). */
  WebSocket?: unknown;
  /** Reconnect backoff: the first and the largest delay cap, ms (250, 15000). */
  minDelay?: number;
  maxDelay?: number;
  /** Quiet time before an application ping (the server's heartbeat by default) and the time
   * its pong may take (10000), ms. */
  pingInterval?: number;
  pingTimeout?: number;
  /** Time a request's answer may take, ms (15000). */
  requestTimeout?: number;
}

/** A refused request: `code` is one of the server's error codes (`room_full`,
 * `unavailable`, ...), or `offline`, `closed`, `timeout`. */
export declare class HubbubError extends Error {
  code: string;
}

export declare class HubbubClient {
  readonly state: State;
  /** The user the server says this connection belongs to, once online. */
  readonly user: string | null;
  /** This connection's id, once online. */
  readonly conn: string | null;
  /** The user's unread notifications, as last pushed by the server. */
  readonly unread: number;

  on(event: "message", fn: (m: Message) => void): () => void;
  on(event: "presence", fn: (p: Presence) => void): () => void;
  on(event: "notification", fn: (n: Notification) => void): () => void;
  on(event: "unread", fn: (count: number) => void): () => void;
  on(event: "online" | "offline", fn: () => void): () => void;
  on(event: "state", fn: (state: State) => void): () => void;
  on(event: "error", fn: (e: Error) => void): () => void;
  on(event: "close", fn: (e: { code: number; reason: string }) => void): () => void;
  /** Messages of one event name: `fn(data, meta)`. */
  on(event: string, fn: (data: any, meta: MessageMeta) => void): () => void;

  join(room: string, opts?: { history?: number; since?: number }): Promise<JoinAck>;
  leave(room: string): Promise<{ room: string }>;
  publish(
    room: string,
    event: string,
    data?: unknown,
    opts?: { volatile?: boolean; exclude_self?: boolean },
  ): Promise<{ seq?: number }>;
  send(to: string, event: string, data?: unknown): Promise<{ delivered: number; seq?: number }>;
  broadcast(event: string, data?: unknown): Promise<{}>;
  notifications(opts?: {
    unread_only?: boolean;
    before?: number;
    limit?: number;
  }): Promise<{ notifications: Notification[]; unread: number }>;
  read(marks: { ids: number[] } | { all: true }): Promise<{ unread: number }>;
  /** Any op, with a fresh id: resolves with the ack's fields. */
  request(frame: { op: string; [field: string]: unknown }, timeoutMs?: number): Promise<any>;
  close(): void;
}

/** Connects to Hubbub's `/ws` endpoint (`ws://` or `wss://`). */
export declare function connect(url: string, opts?: Options): HubbubClient;
