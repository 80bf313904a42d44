// What the browser drivers (arena.mjs, chatroom.mjs) share: the system
// Chromium (WYRM_CHROMIUM or /usr/bin/chromium) through playwright-core,
// trusting a development certificate when WYRM_TRUST_SPKI names its key;
// named steps with deadlines; errors the pages log; and the run itself:
// one JSON summary line and exit 0, or why it failed and exit 1, never
// longer than OVERALL_MS.

import { chromium } from "playwright-core";

const OVERALL_MS = 60_000;
export const STEP_MS = 15_000;

const executablePath = process.env.WYRM_CHROMIUM || "/usr/bin/chromium";
const launchArgs = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
// A server with a development certificate (https://): trusted as its own
// output says, by the SHA-256 of its public key.
if (process.env.WYRM_TRUST_SPKI) launchArgs.push(`--ignore-certificate-errors-spki-list=${process.env.WYRM_TRUST_SPKI}`);

let browser = null;
const problems = []; // console errors and page errors, from every page

export function fail(message) {
  const err = new Error(message);
  err.stepFailure = true;
  return err;
}

// Runs `fn` as a named step with a deadline; any failure names the step.
export async function step(name, timeoutMs, fn) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(fail(`step "${name}" timed out after ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([fn(), deadline]);
  } catch (e) {
    if (e && e.stepFailure && e.message.startsWith("step ")) throw e;
    throw fail(`step "${name}" failed: ${e && e.message ? e.message.split("\n")[0] : e}`);
  } finally {
    clearTimeout(timer);
  }
}

// A `waitIn(page, label, what, predicate, arg, timeoutMs)`: waits for
// `predicate(arg)` to hold in the page; on timeout throws with `what` and
// what `diag(page)` says the page knows.
export function waiter(diag) {
  return async (page, label, what, predicate, arg, timeoutMs) => {
    try {
      await page.waitForFunction(predicate, arg, { timeout: timeoutMs, polling: 100 });
    } catch {
      throw fail(`${label}: ${what} (not within ${timeoutMs} ms); page state: ${JSON.stringify(await diag(page))}`);
    }
  };
}

// Collects what `page` logs as an error, crashes included.
export function watch(page, label) {
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`${label} console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`${label} page error: ${err && err.message ? err.message : err}`));
  page.on("crash", () => problems.push(`${label} page crashed`));
}

export function checkProblems(where) {
  if (problems.length) throw fail(`errors in the pages (seen by ${where}): ${problems.join(" | ")}`);
}

// Launches Chromium (as a step), once per run.
export async function launch() {
  browser = await step("launch chromium", STEP_MS, () =>
    chromium.launch({ executablePath, headless: true, args: launchArgs, timeout: STEP_MS }));
  return browser;
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

// Runs the driver `name` (`node tests/browser/<name>.mjs <base_url>
// <out_dir>`): `run({ baseUrl, outDir })` returns the summary to print.
export async function drive(name, run) {
  const [baseUrl, outDir] = process.argv.slice(2);
  if (!baseUrl || !outDir || !/^https?:\/\//.test(baseUrl)) {
    console.error(`usage: node tests/browser/${name}.mjs <base_url, e.g. http://127.0.0.1:PORT/> <out_dir>`);
    process.exit(2);
  }
  const overall = setTimeout(async () => {
    console.error(`${name} browser test: FAILED: overall timeout of ${OVERALL_MS} ms`);
    await closeBrowser();
    process.exit(1);
  }, OVERALL_MS);
  let code = 1;
  try {
    console.log(JSON.stringify(await run({ baseUrl, outDir })));
    code = 0;
  } catch (e) {
    console.error(`${name} browser test: FAILED: ${e && e.message ? e.message : e}`);
    if (problems.length) console.error(`page errors: ${problems.join(" | ")}`);
  } finally {
    await closeBrowser();
    clearTimeout(overall);
  }
  process.exit(code);
}
