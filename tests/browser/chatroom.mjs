// End-to-end browser test of the chatroom example, on the TypeScript SDK the
// server serves at /wyrm/: two people register and log in through the
// page's forms, talk, one changes rooms; a screenshot of each.
//
//   scripts/setup-browser
//   node tests/browser/chatroom.mjs http://127.0.0.1:PORT/ <out_dir>
//
// Chromium, steps and the run's end: driver.mjs.

import fs from "node:fs";
import path from "node:path";

import { STEP_MS, checkProblems, drive, fail, launch, step, waiter, watch } from "./driver.mjs";

// What a page shows, for failure messages.
async function diag(page) {
  try {
    return await page.evaluate(() => ({
      status: document.getElementById("status-text")?.textContent,
      banner: document.getElementById("banner")?.className === "hidden" ? null : document.getElementById("banner-text")?.textContent,
      room: document.getElementById("room")?.textContent,
      lines: [...document.querySelectorAll("#log .msg")].slice(-8).map((d) => d.textContent),
      me: window.chat && window.chat.client ? window.chat.client.me : null,
    }));
  } catch (e) {
    return { unavailable: String(e && e.message ? e.message.split("\n")[0] : e) };
  }
}

const waitIn = waiter(diag);

const logHas = (text) => [...document.querySelectorAll("#log .msg")].some((d) => d.textContent.includes(text));

async function run({ baseUrl, outDir }) {
  const browser = await launch();
  const tag = String(Date.now() % 100000);
  const names = { ann: `ann${tag}`, bob: `bob${tag}` };
  const pages = {};
  for (const label of Object.keys(names)) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    watch(page, label);
    pages[label] = page;
  }

  // 1. Load, register, log in: through the forms, as a person would.
  await step("1 register and log in", STEP_MS, async () => {
    await Promise.all(Object.entries(pages).map(async ([label, page]) => {
      const res = await page.goto(baseUrl, { waitUntil: "load", timeout: STEP_MS });
      if (!res || !res.ok()) throw fail(`${label}: loading ${baseUrl} answered ${res ? res.status() : "nothing"}`);
      await waitIn(page, label, "never connected", () => document.getElementById("status-text")?.textContent === "connected", null, 10_000);
      await waitIn(page, label, "no login form", () => !document.getElementById("auth").classList.contains("hidden"), null, 10_000);
      await page.fill("#register-form input[name=user]", names[label]);
      await page.fill("#register-form input[name=pass]", "pw-" + label);
      await page.click("#register-form button[type=submit]");
      await waitIn(page, label, "registration was not confirmed",
        () => (document.getElementById("banner-text")?.textContent || "").startsWith("Registered"), null, 10_000);
      await page.fill("#login-form input[name=pass]", "pw-" + label);
      await page.click("#login-form button[type=submit]");
      await waitIn(page, label, "the chat never showed after login",
        () => !document.getElementById("chat").classList.contains("hidden") && document.getElementById("room").textContent === "lobby", null, 10_000);
    }));
  });
  checkProblems("step 1");

  // 2. ann says hello; both see it.
  const hello = `hello from ${names.ann}`;
  await step("2 ann talks, bob hears", STEP_MS, async () => {
    await pages.ann.fill("#send-form input[name=text]", hello);
    await pages.ann.press("#send-form input[name=text]", "Enter");
    await waitIn(pages.bob, "bob", `never saw "${hello}"`, logHas, hello, 10_000);
    await waitIn(pages.ann, "ann", `never saw her own "${hello}"`, logHas, hello, 10_000);
  });
  checkProblems("step 2");

  // 3. bob moves to another room (the room attribute follows) and asks who
  // is there; ann's next line no longer reaches him.
  const side = `side${tag}`;
  await step("3 bob changes rooms", STEP_MS, async () => {
    await pages.bob.fill("#join-form input[name=room]", side);
    await pages.bob.click("#join-form button[type=submit]");
    await waitIn(pages.bob, "bob", `the room never became ${side}`, (r) => document.getElementById("room").textContent === r, side, 10_000);
    await pages.bob.click("#who-btn");
    await waitIn(pages.bob, "bob", "who never answered", (n) => [...document.querySelectorAll("#who-list li")].map((li) => li.textContent).join() === n, names.bob, 10_000);
    await pages.ann.fill("#send-form input[name=text]", "lobby only");
    await pages.ann.press("#send-form input[name=text]", "Enter");
    await waitIn(pages.ann, "ann", "never saw her own second line", logHas, "lobby only", 10_000);
    await pages.bob.fill("#send-form input[name=text]", "from the side");
    await pages.bob.press("#send-form input[name=text]", "Enter");
    await waitIn(pages.bob, "bob", "never saw his own line", logHas, "from the side", 10_000);
    if (await pages.bob.evaluate(logHas, "lobby only")) throw fail("bob, in another room, heard the lobby");
  });
  checkProblems("step 3");

  await step("4 screenshots", STEP_MS, async () => {
    fs.mkdirSync(outDir, { recursive: true });
    for (const [label, page] of Object.entries(pages)) await page.screenshot({ path: path.join(outDir, `chatroom-${label}.png`) });
  });
  checkProblems("step 4");
  return { ok: true, base: baseUrl, names, ann: await diag(pages.ann), bob: await diag(pages.bob) };
}

drive("chatroom", run);
