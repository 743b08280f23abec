// Hubbub's built-in pages in a real browser: Debian's headless Chromium, driven by the npm
// `playwright-core`, against the hubbub binary. Two people chat and see each other's
// messages, presence and typing; a third joins late and gets history; a direct message and
// a notification raise the other's unread count, and reading clears it in both of that
// user's tabs; the push page delivers and says when the recipient is offline; the
// dashboard's figures move; a page survives a server restart. Each page is saved as a
// screenshot (HUBBUB_SCREENSHOTS, default tests/browser/screenshots).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import WebSocket from "ws";
import { startServer, freePort, post } from "../node/server.mjs";
import { connect } from "../../static/client.js";

const here = dirname(fileURLToPath(import.meta.url));
const SHOTS = process.env.HUBBUB_SCREENSHOTS || join(here, "screenshots");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
mkdirSync(SHOTS, { recursive: true });

let browser;
let server;
const servers = [];
const cleanup = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // As root, offline: see ../../../shared/TESTING.md ("Browsers").
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
      "--no-first-run",
    ],
  });
  server = await startServer({ args: ["--store", "memory", "--dm-history", "50"] });
  servers.push(server);
});

after(async () => {
  for (const f of cleanup) await f();
  await browser?.close();
  for (const s of servers) await s.stop();
});

async function page(url, viewport = { width: 1000, height: 680 }) {
  const ctx = await browser.newContext({ viewport });
  cleanup.push(() => ctx.close());
  const p = await ctx.newPage();
  p.on("pageerror", (e) => console.error("page error:", e.message));
  await p.goto(url);
  return p;
}

/** Opens the chat page as `name` and waits until it is online. */
async function chat(name, url = server.url) {
  const p = await page(url + "/");
  await p.getByLabel("Your name").fill(name);
  await p.getByRole("button", { name: "Start chatting" }).click();
  await p.locator("#status").filter({ hasText: `online as ${name}` }).waitFor();
  await p.locator("#title").filter({ hasText: "lobby" }).waitFor();
  return p;
}

const badge = (p) => p.locator("#badge");

test("two people chat in a room and see each other's messages, presence and typing; a third gets history", async () => {
  const ann = await chat("ann");
  const bob = await chat("bob");
  // Who is online: users, with a count.
  await ann.locator("#online-count").filter({ hasText: /^2$/ }).waitFor({ timeout: 15000 });
  await ann.locator("#online").getByRole("button", { name: "bob" }).waitFor();
  // Typing, then the message.
  await bob.getByLabel("Message", { exact: true }).pressSequentially("hel");
  await ann.locator("#typing").filter({ hasText: "bob is typing" }).waitFor();
  await bob.getByLabel("Message", { exact: true }).fill("hello ann");
  await bob.getByLabel("Message", { exact: true }).press("Enter");
  await ann.locator("#messages li").filter({ hasText: "hello ann" }).waitFor();
  await bob.locator("#messages li").filter({ hasText: "hello ann" }).waitFor();
  await ann.locator("#typing").filter({ hasText: /^$/ }).waitFor();
  await ann.getByLabel("Message", { exact: true }).fill("hi bob");
  await ann.getByRole("button", { name: "Send" }).click();
  await bob.locator("#messages li").filter({ hasText: "hi bob" }).waitFor();
  // A latecomer gets the room's history on join.
  const carol = await chat("carol");
  await carol.locator("#messages li").filter({ hasText: "hello ann" }).waitFor();
  await carol.locator("#messages li").filter({ hasText: "hi bob" }).waitFor();
  const texts = await carol.locator("#messages li .text").allTextContents();
  assert.deepEqual(texts, ["hello ann", "hi bob"]);
  await carol.screenshot({ path: join(SHOTS, "chat.png") });
  // A room of one's own: created, listed for the others, joined.
  await ann.getByLabel("New room name").fill("book-club");
  await ann.getByRole("button", { name: "Create" }).click();
  await ann.locator("#title").filter({ hasText: "book-club" }).waitFor();
  await bob.locator("#rooms").getByRole("button", { name: "book-club" }).waitFor({ timeout: 15000 });
});

test("a direct message and a notification raise the unread count; reading clears it in both tabs", async () => {
  const dora = await chat("dora");
  const eve1 = await chat("eve");
  const eve2 = await chat("eve");
  for (const p of [eve1, eve2]) assert.equal(await badge(p).isHidden(), true);
  // dora writes to eve directly.
  await dora.locator("#online").getByRole("button", { name: /^eve/ }).click({ timeout: 15000 });
  await dora.locator("#title").filter({ hasText: "Direct messages with eve" }).waitFor();
  await dora.getByLabel("Message", { exact: true }).fill("psst, eve");
  await dora.getByLabel("Message", { exact: true }).press("Enter");
  await dora.locator("#messages li").filter({ hasText: "psst, eve" }).waitFor();
  for (const p of [eve1, eve2]) await badge(p).filter({ hasText: /^1$/ }).waitFor();
  // A notification from the back end.
  const { status } = await post(server.url, "/api/notify", { to: "eve", event: "billing", data: "invoice ready" });
  assert.equal(status, 201);
  for (const p of [eve1, eve2]) await badge(p).filter({ hasText: /^2$/ }).waitFor();
  // Opening the conversation reads the message: one left, in both tabs.
  await eve1.locator("#online").getByRole("button", { name: "dora" }).click();
  await eve1.locator("#messages li").filter({ hasText: "psst, eve" }).waitFor();
  for (const p of [eve1, eve2]) await badge(p).filter({ hasText: /^1$/ }).waitFor();
  // The bell's list marks the rest read.
  await eve2.locator("#bell").click();
  await eve2.locator("#notes li").filter({ hasText: "invoice ready" }).waitFor();
  await eve2.screenshot({ path: join(SHOTS, "notifications.png") });
  await eve2.getByRole("button", { name: "Mark all read" }).click();
  for (const p of [eve1, eve2]) await badge(p).waitFor({ state: "hidden" });
  // Keyboard: Escape closes the panel and gives the bell its focus back.
  await eve2.keyboard.press("Escape");
  assert.equal(await eve2.locator("#panel").isHidden(), true);
  assert.equal(await eve2.evaluate(() => document.activeElement.id), "bell");
});

test("the push page delivers to another page and shows an offline recipient", async () => {
  const alice = await page(server.url + "/push");
  const bob = await page(server.url + "/push");
  await alice.getByLabel("I am").selectOption("alice");
  await alice.getByRole("button", { name: "Connect" }).click();
  await bob.getByLabel("I am").selectOption("bob");
  await bob.getByRole("button", { name: "Connect" }).click();
  await bob.locator("#status").filter({ hasText: "online as bob" }).waitFor();
  await alice.getByLabel("Send to").selectOption("bob");
  await alice.getByLabel("Message", { exact: true }).fill("ding");
  await alice.getByRole("button", { name: "Push" }).click();
  await alice.locator("#result").filter({ hasText: "sent to bob" }).waitFor();
  await bob.locator("#inbox li").filter({ hasText: "alice: ding" }).waitFor();
  await alice.getByLabel("Send to").selectOption("dave");
  await alice.getByLabel("Message", { exact: true }).fill("anyone?");
  await alice.getByRole("button", { name: "Push" }).click();
  await alice.locator("#result").filter({ hasText: "recipient offline" }).waitFor();
  await bob.screenshot({ path: join(SHOTS, "push.png") });
});

test("the dashboard's figures move when clients connect and publish", async () => {
  const dash = await page(server.url + "/dashboard");
  const value = async (id) => Number((await dash.locator(`#v-${id}`).textContent()).replace(/,/g, "")) || 0;
  await dash.locator("#v-connections").filter({ hasText: /^\d/ }).waitFor();
  const before = await value("connections");
  const clients = [];
  for (let i = 0; i < 3; i++) {
    const c = connect(server.wsUrl + "/ws", { WebSocket, user: `load${i}` });
    clients.push(c);
  }
  cleanup.push(async () => clients.forEach((c) => c.close()));
  await Promise.all(clients.map((c) => c.join("busy")));
  await dash.waitForFunction(
    (n) => Number(document.getElementById("v-connections").textContent.replace(/,/g, "")) >= n,
    before + 3,
  );
  const burst = setInterval(() => clients[0].publish("busy", "tick", 1).catch(() => {}), 20);
  try {
    await dash.waitForFunction(() => Number(document.getElementById("v-in").textContent.replace(/,/g, "")) > 5);
    await dash.locator("#top-traffic tr").filter({ hasText: "busy" }).waitFor();
    await dash.locator("#top-members tr").filter({ hasText: "busy" }).waitFor();
  } finally {
    clearInterval(burst);
  }
  assert.ok((await value("ws")) >= 3);
  await dash.screenshot({ path: join(SHOTS, "dashboard.png"), fullPage: true });
});

test("a page survives a server restart: it reconnects and resumes, nothing missed or repeated", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hubbub-browser-"));
  const port = await freePort();
  const args = ["--store", "sqlite", "--db", join(dir, "t.db")];
  let s = await startServer({ port, args });
  const reader = await chat("reader", s.url);
  const writer = connect(s.wsUrl + "/ws", { WebSocket, user: "writer", minDelay: 50, maxDelay: 500 });
  cleanup.push(async () => writer.close());
  await writer.join("lobby");
  for (let i = 1; i <= 5; i++) await writer.publish("lobby", "chat", { text: `m${i}` });
  await reader.locator("#messages li").filter({ hasText: "m5" }).waitFor();
  assert.equal(await s.stop(), 0);
  await reader.locator("#status").filter({ hasText: "offline" }).waitFor();
  const queued = [6, 7].map((i) => writer.publish("lobby", "chat", { text: `m${i}` }));
  s = await startServer({ port, args });
  servers.push(s);
  await Promise.all(queued);
  for (let i = 8; i <= 10; i++) await writer.publish("lobby", "chat", { text: `m${i}` });
  await reader.locator("#status").filter({ hasText: "online as reader" }).waitFor({ timeout: 20000 });
  await reader.locator("#messages li").filter({ hasText: "m10" }).waitFor();
  await reader.waitForTimeout(300);
  const texts = await reader.locator("#messages li .text").allTextContents();
  assert.deepEqual(texts, Array.from({ length: 10 }, (_, i) => `m${i + 1}`));
});
