// GraphQL at /graphql with the two npm clients a web app uses: graphql-ws 6 (subprotocol
// graphql-transport-ws) and the legacy subscriptions-transport-ws 0.11 (graphql-ws). Their
// subscriptions receive, in order, what a v1 client, a Socket.IO client and the HTTP API
// publish; queries and mutations run through them; invalid operations come back as errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { createClient } from "graphql-ws";
import { SubscriptionClient } from "subscriptions-transport-ws";
import { createHmac } from "node:crypto";
import { io as ioc } from "socket.io-client";
import { startServer, post, v1Client } from "./server.mjs";

let server;
const closers = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const c of closers) await c();
  assert.equal(await server.stop(), 0);
});

/** A graphql-ws client for `user`. */
function modern(user) {
  const client = createClient({
    url: server.wsUrl + "/graphql",
    webSocketImpl: WebSocket,
    connectionParams: { user },
    retryAttempts: 0,
    lazy: false,
  });
  closers.push(() => client.dispose());
  return client;
}

/** A subscriptions-transport-ws client for `user`. */
function legacy(user) {
  const client = new SubscriptionClient(
    server.wsUrl + "/graphql",
    { reconnect: false, connectionParams: { user } },
    WebSocket,
  );
  closers.push(() => client.close());
  return client;
}

/** Collects the results of a subscription; `take(n)` waits for `n` of them. */
function collect() {
  const got = [];
  let wake = () => {};
  const sink = {
    next: (r) => {
      got.push(r);
      wake();
    },
    error: (e) => {
      got.push({ error: e });
      wake();
    },
    complete: () => {},
  };
  const take = async (n, ms = 5000) => {
    const deadline = Date.now() + ms;
    while (got.length < n) {
      assert.ok(Date.now() < deadline, `only ${got.length} of ${n} results`);
      await new Promise((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return got.slice(0, n);
  };
  return { sink, take };
}

async function presence(room) {
  return (await (await fetch(`${server.url}/api/presence/${room}`)).json()).users ?? [];
}

async function members(room, n) {
  for (let i = 0; (await presence(room)).length < n; i++) {
    assert.ok(i < 100, `${n} members in ${room}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Publishes `tag` into `room` from a v1 client, a Socket.IO client and the HTTP API. */
async function publishFromEveryFrontEnd(room) {
  const v1 = v1Client(server.wsUrl + "/ws/vic");
  closers.push(() => v1.close());
  await v1.opened;
  assert.equal((await v1.request({ op: "publish", room, event: "say", data: "v1" })).op, "ack");
  const sio = ioc(server.url, { transports: ["websocket"], auth: { user: "sia" }, forceNew: true });
  closers.push(() => sio.disconnect());
  const ack = await sio.emitWithAck("publish", { room, event: "say", data: "socket.io" });
  assert.ok(!ack?.error, JSON.stringify(ack));
  const r = await post(server.url, "/api/push", { room, event: "say", data: "http" });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

const query = "subscription ($room: String!) { messages(room: $room) { event data from seq } }";

test("graphql-ws: a subscription gets what every front end publishes, in order", async () => {
  const client = modern("gwen");
  const { sink, take } = collect();
  client.subscribe({ query, variables: { room: "gql-1" } }, sink);
  await members("gql-1", 1);
  await publishFromEveryFrontEnd("gql-1");
  const got = await take(3);
  assert.deepEqual(
    got.map((r) => r.data.messages),
    [
      { event: "say", data: "v1", from: "vic", seq: 1 },
      { event: "say", data: "socket.io", from: "sia", seq: 2 },
      { event: "say", data: "http", from: null, seq: 3 },
    ],
  );
});

test("subscriptions-transport-ws: the same, over the legacy protocol", async () => {
  const client = legacy("lena");
  const { sink, take } = collect();
  client.request({ query, variables: { room: "gql-2" } }).subscribe(sink);
  await members("gql-2", 1);
  await publishFromEveryFrontEnd("gql-2");
  const got = await take(3);
  assert.deepEqual(
    got.map((r) => r.data.messages.data),
    ["v1", "socket.io", "http"],
  );
});

test("graphql-ws: queries and mutations, and invalid operations as errors", async () => {
  const client = modern("mona");
  const { sink, take } = collect();
  client.subscribe({ query: "subscription { messages(room: \"gql-3\") { data } }" }, sink);
  await members("gql-3", 1);
  const published = await new Promise((resolve, reject) => {
    client.subscribe(
      { query: 'mutation { publish(room: "gql-3", event: "e", data: {n: 1}) { delivered seq } }' },
      { next: resolve, error: reject, complete: () => {} },
    );
  });
  assert.deepEqual(published.data.publish, { delivered: 1, seq: 1 });
  assert.deepEqual((await take(1))[0].data.messages.data, { n: 1 });
  const rooms = await new Promise((resolve, reject) => {
    client.subscribe(
      { query: '{ room(name: "gql-3") { name members history } }' },
      { next: resolve, error: reject, complete: () => {} },
    );
  });
  assert.deepEqual(rooms.data.room, { name: "gql-3", members: 1, history: 100 });
  const refused = await new Promise((resolve) => {
    client.subscribe(
      { query: "subscription { messages(room: 7) { data } }" },
      { next: () => resolve("a result"), error: resolve, complete: () => {} },
    );
  });
  assert.ok(Array.isArray(refused) && refused[0].message, JSON.stringify(refused));
});

/** An HS256 JWT (signed here with node:crypto, as an identity provider would). */
function jwt(secret, claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", secret).update(body).digest("base64url");
  return `${body}.${sig}`;
}

test("both clients are refused a room their token gives no rights in", async () => {
  const secret = "a test secret, long enough for HS256";
  const guarded = await startServer({ args: ["--store", "memory", "--auth", "jwt", "--jwt-secret", secret] });
  try {
    const token = jwt(secret, { sub: "rita", exp: Math.floor(Date.now() / 1000) + 60, rooms: { open: ["join"] } });
    const url = guarded.wsUrl + "/graphql";
    const modernClient = createClient({ url, webSocketImpl: WebSocket, connectionParams: { token }, retryAttempts: 0 });
    closers.push(() => modernClient.dispose());
    const legacyClient = new SubscriptionClient(url, { reconnect: false, connectionParams: { token } }, WebSocket);
    closers.push(() => legacyClient.close());
    const refusedModern = await new Promise((resolve) => {
      modernClient.subscribe(
        { query: 'subscription { messages(room: "closed") { data } }' },
        { next: () => resolve("a result"), error: resolve, complete: () => resolve("completed") },
      );
    });
    assert.equal(refusedModern[0]?.extensions?.code, "forbidden", JSON.stringify(refusedModern));
    const refusedLegacy = await new Promise((resolve) => {
      legacyClient
        .request({ query: 'subscription { messages(room: "closed") { data } }' })
        .subscribe({ next: () => resolve("a result"), error: resolve });
    });
    const legacyErrors = Array.isArray(refusedLegacy) ? refusedLegacy : [refusedLegacy];
    assert.equal(legacyErrors[0]?.extensions?.code, "forbidden", JSON.stringify(refusedLegacy));
    // The room the token names works, for both.
    const a = collect();
    const b = collect();
    modernClient.subscribe({ query: 'subscription { messages(room: "open") { data } }' }, a.sink);
    legacyClient.request({ query: 'subscription { messages(room: "open") { data } }' }).subscribe(b.sink);
    for (let i = 0; (await (await fetch(`${guarded.url}/api/presence/open`)).json()).count !== 1; i++) {
      assert.ok(i < 100, "rita joined open");
      await new Promise((r) => setTimeout(r, 50));
    }
    const r = await post(guarded.url, "/api/push", { room: "open", event: "e", data: "ok" });
    assert.equal(r.status, 200);
    assert.equal((await a.take(1))[0].data.messages.data, "ok");
    assert.equal((await b.take(1))[0].data.messages.data, "ok");
  } finally {
    assert.equal(await guarded.stop(), 0);
  }
});
