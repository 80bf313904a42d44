// End-to-end browser test of the arena example: two players in two browser
// contexts log in, see each other, one moves and the other sees it, one
// shoots; screenshots of both.
//
//   scripts/setup-browser
//   node tests/browser/arena.mjs http://127.0.0.1:PORT/ <out_dir>
//
// Chromium, steps and the run's end: driver.mjs.

import fs from "node:fs";
import path from "node:path";

import { STEP_MS, checkProblems, drive, fail, launch, step, waiter, watch } from "./driver.mjs";

async function diag(page) {
  try {
    return await page.evaluate(() => {
      const a = window.arena;
      if (!a) return { arena: "window.arena is not set", status: document.getElementById("status")?.textContent };
      const own = a.me == null ? null : a.entities.get(a.me);
      return {
        status: document.getElementById("status")?.textContent,
        connected: a.connected, welcome: a.welcome, me: a.me,
        own: own ? { type: own.type, placed: own.placed, x: own.x, y: own.y, hp: own.attrs.hp, dead: own.attrs.dead } : null,
        entities: [...a.entities.values()].map((e) => `${e.id}:${e.type}${e.own ? "(own)" : ""}${e.placed ? "" : "(unplaced)"}`),
        errors: a.errors, frames: a.frames,
      };
    });
  } catch (e) {
    return { unavailable: String(e && e.message ? e.message.split("\n")[0] : e) };
  }
}

const waitIn = waiter(diag);

const ownPlaced = () => {
  const a = window.arena;
  if (!a || a.me == null) return false;
  const e = a.entities.get(a.me);
  return !!(e && e.type === "Player" && e.placed);
};

async function run({ baseUrl, outDir }) {
  const browser = await launch();

  const pages = {};
  for (const label of ["alice", "bob"]) {
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_MS);
    watch(page, label);
    pages[label] = page;
  }
  const A = pages.alice, B = pages.bob;

  // 1. Load, log in, own Player placed.
  const ids = await step("1 load and log in", STEP_MS, async () => {
    await Promise.all(Object.entries(pages).map(async ([name, page]) => {
      const res = await page.goto(baseUrl, { waitUntil: "load", timeout: STEP_MS });
      if (!res || !res.ok()) throw fail(`${name}: loading ${baseUrl} answered ${res ? res.status() : "nothing"}`);
      await waitIn(page, name, "the page did not expose window.arena", () => !!window.arena, null, 5000);
      await page.fill("#name", name);
      await waitIn(page, name, "the login button never became enabled (no connection or no Account entity)",
        () => { const b = document.getElementById("login"); return b && !b.disabled; }, null, 10_000);
      await page.click("#login");
      await waitIn(page, name, "no own Player with a position after login", ownPlaced, null, 10_000);
    }));
    const out = {};
    for (const [name, page] of Object.entries(pages)) {
      const w = await page.evaluate(() => window.arena.welcome);
      if (!w || w.version !== 4) throw fail(`${name}: Welcome.version is ${w ? w.version : "missing"}, expected 4`);
      out[name] = await page.evaluate(() => window.arena.me);
    }
    return out;
  });
  checkProblems("step 1");

  // 2. Each sees the other's Player.
  await step("2 see each other", STEP_MS, async () => {
    const seesPlayer = ([id]) => {
      const e = window.arena.entities.get(id);
      return !!(e && e.type === "Player" && !e.own && e.placed);
    };
    await Promise.all([
      waitIn(A, "alice", `bob's Player (entity ${ids.bob}) never appeared`, seesPlayer, [ids.bob], 10_000),
      waitIn(B, "bob", `alice's Player (entity ${ids.alice}) never appeared`, seesPlayer, [ids.alice], 10_000),
    ]);
  });
  checkProblems("step 2");

  // 3. Alice moves right; Bob sees it.
  const posOf = (page, id) => page.evaluate((i) => {
    const e = window.arena.entities.get(i);
    return e ? { x: e.x, y: e.y } : null;
  }, id);
  const before = { bobSeesAlice: await posOf(B, ids.alice), aliceOwn: await posOf(A, ids.alice), bobOwn: await posOf(B, ids.bob) };
  const after = await step("3 alice moves, bob sees it", STEP_MS, async () => {
    // Bob records the largest x he sees for alice: if the two spawned far
    // apart, alice may walk out of bob's area of interest (and be destroyed
    // on his side) before the check runs.
    await B.evaluate((id) => {
      window.__maxSeenX = -Infinity;
      window.__seenTimer = setInterval(() => {
        const e = window.arena.entities.get(id);
        if (e && e.placed && e.x > window.__maxSeenX) window.__maxSeenX = e.x;
      }, 10);
    }, ids.alice);
    await A.bringToFront();
    await A.keyboard.down("ArrowRight");
    await A.waitForTimeout(1200);
    await A.keyboard.up("ArrowRight");
    const aliceOwn = await posOf(A, ids.alice);
    if (!aliceOwn || !(aliceOwn.x > before.aliceOwn.x + 100)) {
      throw fail(`alice's own predicted x went from ${before.aliceOwn.x} to ${aliceOwn && aliceOwn.x} (expected > +100)`);
    }
    await waitIn(B, "bob", `alice's x as bob sees it did not grow by more than 100 from ${before.bobSeesAlice.x}`,
      (x0) => window.__maxSeenX > x0 + 100, before.bobSeesAlice.x, 5000);
    const bobMaxSeenX = await B.evaluate(() => { clearInterval(window.__seenTimer); return window.__maxSeenX; });
    return {
      bobSeesAlice: await posOf(B, ids.alice), bobMaxSeenX,
      aliceOwn: await posOf(A, ids.alice), bobOwn: await posOf(B, ids.bob),
    };
  });
  checkProblems("step 3");

  // 4. Bob shoots once, aiming at alice.
  const shot = await step("4 bob shoots", STEP_MS, async () => {
    await B.bringToFront();
    const target = await B.evaluate((aliceId) => {
      const a = window.arena, me = a.entities.get(a.me), other = a.entities.get(aliceId);
      const r = document.getElementById("view").getBoundingClientRect();
      const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
      if (!me || !other) return { x: cx + 100, y: cy };
      const dx = other.x - me.x, dy = other.y - me.y, d = Math.hypot(dx, dy) || 1;
      // Toward alice, kept inside the canvas.
      const k = Math.min(1, (Math.min(r.width, r.height) / 2 - 20) / d);
      return { x: cx + dx * k, y: cy + dy * k };
    }, ids.alice);
    await B.mouse.click(target.x, target.y);
    await B.waitForTimeout(400);
    return target;
  });
  checkProblems("step 4");

  // 5. Screenshots.
  await step("5 screenshots", STEP_MS, async () => {
    fs.mkdirSync(outDir, { recursive: true });
    await A.screenshot({ path: path.join(outDir, "arena-alice.png") });
    await B.screenshot({ path: path.join(outDir, "arena-bob.png") });
  });
  checkProblems("step 5");

  const counts = async (page) => page.evaluate(() => {
    const a = window.arena;
    const byType = {};
    for (const e of a.entities.values()) byType[e.type] = (byType[e.type] || 0) + 1;
    return { entities: a.entities.size, byType, drawn: a.drawn, frames: a.frames, errors: a.errors };
  });
  return {
    ok: true, base: baseUrl, ids, before, after, shotAt: shot,
    alice: await counts(A), bob: await counts(B),
    screenshots: [path.join(outDir, "arena-alice.png"), path.join(outDir, "arena-bob.png")],
  };
}

drive("arena", run);
