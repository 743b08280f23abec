// The built-in pages on a phone-sized screen and with the keyboard alone, in headless
// Chromium: no sideways scrolling, every control named for a screen reader, text contrast
// of at least WCAG AA, and the chat used end to end with Tab, typing and Enter (log in,
// send, open the notifications and close them with Escape).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { startServer, post } from "../node/server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const SHOTS = process.env.HUBBUB_SCREENSHOTS || join(here, "screenshots");
mkdirSync(SHOTS, { recursive: true });
const PHONE = { width: 375, height: 720 };

let browser;
let server;
const contexts = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"],
  });
  server = await startServer({ args: ["--store", "memory"] });
});

after(async () => {
  for (const c of contexts) await c.close();
  await browser?.close();
  await server?.stop();
});

async function phonePage(path) {
  const ctx = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true });
  contexts.push(ctx);
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(server.url + path);
  return page;
}

/** What of the page a phone user would have to scroll sideways to see. */
const overflow = (page) =>
  page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

/** Controls the accessibility tree shows without a name (a screen reader says "button"). */
async function unnamed(page) {
  const tree = await page.locator("body").ariaSnapshot();
  return tree
    .split("\n")
    .filter((l) => /^\s*- (button|textbox|combobox|link|checkbox|searchbox|spinbutton)(\s*\[[^\]]*\])*:?\s*$/.test(l));
}

/**
 * Visible text whose contrast against the background behind it is under WCAG AA (4.5:1,
 * or 3:1 for large text), computed from the styles Chromium applied.
 */
const lowContrast = (page) =>
  page.evaluate(() => {
    const rgba = (s) => {
      const m = s.match(/rgba?\(([^)]+)\)/);
      if (!m) return [0, 0, 0, 0];
      const p = m[1].split(/[,\s/]+/).filter(Boolean).map(Number);
      return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const lum = ([r, g, b]) => {
      const c = [r, g, b].map((v) => {
        v /= 255;
        return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    const over = (top, below) => {
      const a = top[3];
      return [0, 1, 2].map((i) => top[i] * a + below[i] * (1 - a)).concat(1);
    };
    const background = (el) => {
      const layers = [];
      for (let e = el; e; e = e.parentElement) {
        const bg = rgba(getComputedStyle(e).backgroundColor);
        if (bg[3] > 0) layers.push(bg);
        if (bg[3] === 1) break;
      }
      let color = [255, 255, 255, 1];
      for (const l of layers.reverse()) color = over(l, color);
      return color;
    };
    const bad = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!n.textContent.trim() || !el.checkVisibility()) continue;
      const r = el.getBoundingClientRect();
      if (r.width <= 1 || r.height <= 1) continue; // visually hidden (screen reader text)
      const style = getComputedStyle(el);
      const bg = background(el);
      const fg = over(rgba(style.color), bg);
      const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
      const ratio = (hi + 0.05) / (lo + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) bad.push(`${n.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
    }
    return bad;
  });

async function checkPage(page, name) {
  assert.ok((await overflow(page)) <= 0, `${name} scrolls sideways on a phone`);
  assert.deepEqual(await unnamed(page), [], `${name} has controls without a name`);
  assert.deepEqual(await lowContrast(page), [], `${name} has text below WCAG AA contrast`);
}

/** Presses Tab until `locator` has the focus; fails after `max` presses. */
async function tabTo(page, locator, max = 25) {
  for (let i = 0; i < max; i++) {
    if (await locator.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press("Tab");
  }
  assert.fail(`Tab never reached ${locator}`);
}

test("the chat works on a phone with the keyboard alone, named and readable", async () => {
  const page = await phonePage("/");
  await checkPage(page, "the chat's login");
  // Log in: Tab to the name, type it, Enter.
  await tabTo(page, page.getByLabel("Your name"));
  await page.keyboard.type("kim");
  await page.keyboard.press("Enter");
  await page.locator("#status").filter({ hasText: "online as kim" }).waitFor();
  // Joining a room puts the focus on the message field: type and Enter.
  await page.getByLabel("Message", { exact: true }).waitFor();
  await page.waitForFunction(() => document.activeElement?.id === "text");
  await page.keyboard.type("typed without a mouse");
  await page.keyboard.press("Enter");
  await page.locator("#messages li").filter({ hasText: "typed without a mouse" }).waitFor();
  await page.locator("#online").getByRole("button", { name: "kim" }).waitFor();
  await checkPage(page, "the chat");

  // A notification: reach the bell with Tab, open it with Enter, close it with Escape.
  const sent = await post(server.url, "/api/notify", { to: "kim", event: "keyboard", data: "hello" });
  assert.equal(sent.status, 201, JSON.stringify(sent.body));
  const bell = page.getByRole("button", { name: /Notifications/ });
  await bell.filter({ hasText: "1" }).waitFor();
  await page.evaluate(() => document.activeElement?.blur());
  await tabTo(page, bell);
  await page.keyboard.press("Enter");
  const panel = page.getByRole("dialog", { name: "Notifications" });
  await panel.getByText("hello").waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.id), "read-all", "the panel takes the focus");
  await checkPage(page, "the notifications panel");
  await page.screenshot({ path: join(SHOTS, "phone-chat.png") });
  await page.keyboard.press("Escape");
  await panel.waitFor({ state: "hidden" });
  assert.equal(await bell.evaluate((el) => el === document.activeElement), true, "Escape gives the focus back");
  assert.deepEqual(page.errors, []);
});

test("the push page and the dashboard fit a phone and name their controls", async () => {
  const push = await phonePage("/push");
  await checkPage(push, "the push page");
  // Keyboard: choose who I am, connect.
  await tabTo(push, push.getByLabel("I am"));
  await push.keyboard.press("ArrowDown"); // bob
  await tabTo(push, push.getByRole("button", { name: "Connect" }));
  await push.keyboard.press("Enter");
  await push.getByLabel("Send to").waitFor();
  await checkPage(push, "the connected push page");

  const dash = await phonePage("/dashboard");
  await dash.locator("#status").filter({ hasText: /online|live|connected/i }).waitFor();
  await checkPage(dash, "the dashboard");
  assert.deepEqual([...push.errors, ...dash.errors], []);
});

test("the GraphQL explorer runs a subscription on a phone, with the keyboard alone", async () => {
  const page = await phonePage("/graphql");
  await checkPage(page, "the GraphQL explorer");
  await tabTo(page, page.getByRole("button", { name: "Run" }));
  await page.keyboard.press("Enter");
  await page.locator("#status").filter({ hasText: "running" }).waitFor();
  // The explorer's subscription (to lobby) is a member like any other client.
  for (let i = 0; ; i++) {
    const users = (await (await fetch(`${server.url}/api/presence/lobby`)).json()).users ?? [];
    if (users.includes("explorer")) break;
    assert.ok(i < 100, "the explorer joined lobby");
    await new Promise((r) => setTimeout(r, 50));
  }
  const r = await post(server.url, "/api/push", { room: "lobby", event: "news", data: { text: "to the explorer" } });
  assert.equal(r.status, 200);
  await page.locator("#results li").filter({ hasText: "to the explorer" }).waitFor();
  await checkPage(page, "the explorer with a result");
  await page.getByRole("button", { name: "Stop" }).click();
  await page.locator("#status").filter({ hasText: "done" }).waitFor();
  assert.deepEqual(page.errors, []);
});
