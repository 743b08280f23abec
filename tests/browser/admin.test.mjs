// The official Socket.IO admin UI (its built `ui/dist` from the npm `@socket.io/admin-ui`,
// served from node_modules, never copied into the project) against Hubbub: it logs in with
// basic auth, lists Hubbub's v1 and Socket.IO connections and their rooms, and disconnects
// one. In headless Chromium, like the pages' tests.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createReadStream, existsSync, mkdirSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { io } from "socket.io-client";
import { startServer, v1Client, once } from "../node/server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const UI = join(here, "node_modules", "@socket.io", "admin-ui", "ui", "dist");
const SHOTS = process.env.HUBBUB_SCREENSHOTS || join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });
// The password is "hubbub-admin"; this is its Argon2 hash, as `admin_password` takes it.
const HASH = "$argon2id$v=19$m=8192,t=1,p=1$RnbbI+0IzQJsA1jLEPhPbg$tw98Bkg9yt+gRWQYlQ1FKO4PfAKhNclbGpJCPpiS47U";

let browser;
let hubbub;
let ui;
let uiUrl;
const closers = [];

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".map": "application/json" };

before(async () => {
  assert.ok(existsSync(join(UI, "index.html")), "npm ci installs @socket.io/admin-ui");
  ui = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    let file = join(UI, path);
    if (!file.startsWith(UI) || !existsSync(file) || statSync(file).isDirectory()) file = join(UI, "index.html");
    res.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" });
    createReadStream(file).pipe(res);
  });
  await new Promise((r) => ui.listen(0, "127.0.0.1", r));
  uiUrl = `http://127.0.0.1:${ui.address().port}`;
  hubbub = await startServer({ args: ["--store", "memory", "--admin-ui", "on", "--admin-password", HASH] });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
});

after(async () => {
  for (const c of closers) c();
  await browser?.close();
  await hubbub?.stop();
  ui?.close();
});

async function adminPage() {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await ctx.newPage();
  // The UI asks Google Fonts and jsDelivr for its font and icons; this network is closed.
  await page.route(/fonts\.googleapis\.com|cdn\.jsdelivr\.net/, (r) => r.fulfill({ status: 200, contentType: "text/css", body: "" }));
  await page.goto(uiUrl + "/");
  return page;
}

async function login(page, password) {
  await page.getByLabel("Server URL").fill(hubbub.url);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
}

test("a wrong password is refused", async () => {
  const page = await adminPage();
  await login(page, "not-it");
  await page.getByText(/Invalid credentials/i).waitFor();
  await page.context().close();
});

test("the admin UI lists Hubbub's v1 and Socket.IO connections and rooms, and disconnects one", async () => {
  // A v1 client and a Socket.IO client in one room.
  const raw = v1Client(hubbub.wsUrl + "/ws/admin-v1");
  closers.push(() => raw.terminate());
  const welcome = await raw.next((m) => m.op === "welcome");
  await raw.request({ op: "join", room: "admin-room" });
  const sock = io(hubbub.url, { auth: { user: "admin-sio" }, reconnection: false, forceNew: true });
  closers.push(() => sock.disconnect());
  await once(sock, "connect");
  await sock.emitWithAck("join", { room: "admin-room" });

  const page = await adminPage();
  await login(page, "hubbub-admin");
  await page.getByRole("dialog").waitFor({ state: "hidden" });
  await page.goto(uiUrl + "/#/sockets/");
  await page.getByRole("cell", { name: welcome.conn, exact: true }).waitFor();
  await page.getByRole("cell", { name: sock.id, exact: true }).waitFor();
  // The reload shows the connection dialog again until its saved session reconnects.
  await page.locator(".v-dialog").waitFor({ state: "hidden" });
  await page.screenshot({ path: join(SHOTS, "admin-sockets.png"), animations: "disabled" });
  await page.goto(uiUrl + "/#/rooms/");
  const room = page.getByRole("row").filter({ hasText: "admin-room" });
  await room.waitFor();
  assert.match(await room.textContent(), /2/, "both connections are in the room");

  // Disconnect the v1 connection from its row of the sockets list.
  await page.goto(uiUrl + "/#/sockets/");
  const row = page.getByRole("row").filter({ hasText: welcome.conn });
  const closed = once(raw, "close", 10000);
  await row.getByRole("button").last().click();
  const [code] = await closed;
  assert.equal(code, 4000);
  // (The row's click also opens the socket's details; back to the list.)
  await page.goto(uiUrl + "/#/sockets/");
  await page.getByRole("cell", { name: sock.id, exact: true }).waitFor();
  await page.getByRole("row").filter({ hasText: welcome.conn }).waitFor({ state: "detached" });
  assert.equal(sock.connected, true, "the other connection is untouched");
  await page.context().close();
});
