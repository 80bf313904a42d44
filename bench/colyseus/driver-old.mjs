#!/usr/bin/env node
// THE load driver of the Wyrm / Colyseus comparison, the same for both
// servers: N clients join one room; each sends a move (a new x, y) `--rate`
// times a second; the server sends room state to everyone 20 times a second.
// A move's latency is the time from sending it until the same client sees
// its own new x in what the server sends back (each client's x values are a
// counter, so every move is recognisable).
//
//   node driver.mjs --server wyrm --url ws://127.0.0.1:18470/ws --clients 50
//   node driver.mjs --server colyseus --url ws://127.0.0.1:18480 --clients 50
//
// Options: --warmup S (3), --measure S (10), --rate HZ (10), --pid PID (the
// server's process, for its CPU and memory from /proc), --samples K (raw
// latency samples to print, 0), --join-concurrency C (20).
//
// Progress goes to stderr; the result is one JSON object on stdout. It
// exits non-zero if not every client could join.

import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { monitorEventLoopDelay, performance } from "node:perf_hooks";

import { WyrmClient } from "./wyrm-client.mjs";

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

function parseArgs(argv) {
  const o = {
    server: null, url: null, clients: 10, warmup: 3, measure: 10, rate: 10,
    pid: null, samples: 0, joinConcurrency: 20, grace: 1,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = argv[i + 1];
    const num = () => { i++; const n = Number(v); if (!Number.isFinite(n)) die(`${a} needs a number`); return n; };
    switch (a) {
      case "--server": o.server = v; i++; break;
      case "--url": o.url = v; i++; break;
      case "--clients": o.clients = num(); break;
      case "--warmup": o.warmup = num(); break;
      case "--measure": o.measure = num(); break;
      case "--rate": o.rate = num(); break;
      case "--pid": o.pid = num(); break;
      case "--samples": o.samples = num(); break;
      case "--join-concurrency": o.joinConcurrency = num(); break;
      case "--grace": o.grace = num(); break;
      case "-h": case "--help":
        process.stdout.write(leadingComment(readFileSync(new URL(import.meta.url)).toString()) + "\n");
        process.exit(0);
        break;
      default: die(`unknown option ${a}`);
    }
  }
  if (o.server !== "wyrm" && o.server !== "colyseus") die("--server must be wyrm or colyseus");
  if (!o.url) die("--url is required");
  if (!(o.clients >= 1) || !(o.rate > 0) || !(o.measure > 0) || !(o.warmup >= 0)) die("bad --clients, --rate, --measure or --warmup");
  return o;
}

/** The comment block at the top of a source file, without its `// `. */
function leadingComment(text) {
  const lines = text.split("\n");
  let i = lines[0].startsWith("#!") ? 1 : 0;
  const out = [];
  for (; i < lines.length && lines[i].startsWith("//"); i++) out.push(lines[i].slice(3));
  return out.join("\n");
}

function die(msg) {
  process.stderr.write(`driver: ${msg}\n`);
  process.exit(2);
}

const log = (msg) => process.stderr.write(`driver: ${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// The server's process, from /proc
// ---------------------------------------------------------------------------

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;
} catch { /* 100 is Linux's USER_HZ everywhere that matters */ }

/** utime and stime of `pid` in seconds: `{ user, system }`. */
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces: count fields after its ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  return { user: Number(fields[11]) / clockTicks, system: Number(fields[12]) / clockTicks };
}

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
function machineJiffies() {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is inside user)
  const idle = v[3] + (v[4] || 0);
  const total = v.slice(0, 8).reduce((a, b) => a + (b || 0), 0);
  return { busy: total - idle, total };
}

function medianOf(xs) {
  const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
  return v.length ? v[Math.floor(v.length / 2)] : null;
}

/** VmRSS of `pid` in KiB. */
function procRssKib(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

// ---------------------------------------------------------------------------
// One simulated client: the part that is the same for both servers
// ---------------------------------------------------------------------------

/** The hall / room is [0, 1000)²: x = (counter mod 4000 + 1) / 4 stays in it, exact in f32. */
const X_STEPS = 4000;

class Bot {
  constructor(index) {
    this.index = index;
    this.seq = Math.floor(Math.random() * X_STEPS);
    /** Moves sent and not yet seen, oldest first: {x, t, counted}. */
    this.pending = [];
    this.bytesIn = 0;
    this.statesIn = 0;
    this.conn = null;
    this.closed = false;
  }

  nextMove() {
    this.seq = (this.seq + 1) % X_STEPS;
    return { x: (this.seq + 1) / 4, y: Math.round(Math.random() * 3996) / 4 };
  }
}

// ---------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------

const opts = parseArgs(process.argv);
const stats = {
  phase: "join", // join -> warmup -> measure -> grace -> done
  sent: 0, acked: 0, superseded: 0, latencies: [], rawSamples: [],
  sendFailures: 0, statesIn: 0, bytesIn: 0,
};

/** A state from the server showed `bot`'s own x at time `now`. */
function sawOwnX(bot, x, now) {
  const p = bot.pending;
  if (p.length === 0) return;
  let k = -1;
  for (let i = p.length - 1; i >= 0; i--) { if (p[i].x === x) { k = i; break; } }
  if (k < 0) return;
  for (let i = 0; i <= k; i++) {
    const m = p[i];
    if (!m.counted) continue;
    if (i < k) { stats.superseded++; continue; }
    const lat = now - m.t;
    stats.acked++;
    stats.latencies.push(lat);
    if (stats.rawSamples.length < opts.samples) {
      stats.rawSamples.push({ client: bot.index, x, sent_ms: +m.t.toFixed(3), seen_ms: +now.toFixed(3), latency_ms: +lat.toFixed(3) });
    }
  }
  p.splice(0, k + 1);
}

function counting() { return stats.phase === "measure" || stats.phase === "grace"; }

async function joinWyrm(bot) {
  const c = await WyrmClient.connect(opts.url);
  bot.conn = c;
  c.ws.on("message", (data) => { if (counting()) { bot.bytesIn += data.length; bot.statesIn++; } });
  c.onPositions = (entries) => {
    const now = performance.now();
    for (const e of entries) if (e.entity === c.me) { sawOwnX(bot, e.x, now); break; }
  };
  c.onClose = () => { bot.closed = true; };
  bot.send = (m) => c.move(m.x, m.y, 0, 0);
  bot.leave = () => c.close();
}

let colyseusClient = null;
let colyseusRoomId = null;

async function joinColyseus(bot) {
  const { Client } = await import("colyseus.js");
  if (!colyseusClient) colyseusClient = new Client(opts.url);
  const room = colyseusRoomId
    ? await colyseusClient.joinById(colyseusRoomId)
    : await colyseusClient.joinOrCreate("bench");
  colyseusRoomId = room.roomId;
  bot.conn = room;
  const ws = room.connection.transport.ws;
  ws.on("message", (data) => { if (counting()) { bot.bytesIn += data.byteLength ?? data.length; bot.statesIn++; } });
  room.onStateChange((state) => {
    const now = performance.now();
    const me = state.players && state.players.get(room.sessionId);
    if (me) sawOwnX(bot, me.x, now);
  });
  room.onLeave(() => { bot.closed = true; });
  room.onError((code, message) => log(`colyseus error ${code}: ${message}`));
  bot.send = (m) => { room.send("move", m); return true; };
  bot.leave = () => room.leave(true).catch(() => {});
}

async function main() {
  const bots = Array.from({ length: opts.clients }, (_, i) => new Bot(i));
  const join = opts.server === "wyrm" ? joinWyrm : joinColyseus;

  // Memory with no clients: the median of a few readings, since a garbage
  // collector (Colyseus runs on V8) makes one reading noisy.
  let rssBase = null;
  if (opts.pid) {
    const xs = [];
    for (let i = 0; i < 5; i++) { xs.push(procRssKib(opts.pid)); await sleep(200); }
    rssBase = medianOf(xs);
  }

  // Join: the first alone (Colyseus creates the room with it), then the rest
  // a few at a time.
  const t0 = performance.now();
  await join(bots[0]);
  let next = 1, joinErrors = [];
  await Promise.all(Array.from({ length: Math.min(opts.joinConcurrency, opts.clients) }, async () => {
    while (next < bots.length) {
      const b = bots[next++];
      try { await join(b); } catch (e) { joinErrors.push(String(e && e.message || e)); }
    }
  }));
  const joinMs = performance.now() - t0;
  const joined = bots.filter((b) => b.conn).length;
  log(`${opts.server}: ${joined}/${opts.clients} clients joined in ${joinMs.toFixed(0)} ms`);
  if (joined < opts.clients) {
    log(`join errors: ${[...new Set(joinErrors)].slice(0, 3).join("; ")}`);
  }

  // Moves: `rate` a second per client, the k-th at a random moment of the
  // k-th period (so moves stay in order, average exactly `rate` a second,
  // and fall at random points of the server's 50 ms state period rather
  // than at one fixed offset per client, which would make percentiles at a
  // few clients depend on how the two clocks happened to line up).
  const period = 1000 / opts.rate;
  const timers = new Set();
  const later = (fn, ms) => { const t = setTimeout(() => { timers.delete(t); fn(); }, Math.max(0, ms)); timers.add(t); };
  const movesStart = performance.now();
  for (const b of bots) {
    if (!b.conn) continue;
    let k = 0;
    const tick = () => {
      if (b.closed || stats.phase === "done") return;
      const m = b.nextMove();
      const t = performance.now();
      const counted = stats.phase === "measure";
      if (b.send(m)) {
        b.pending.push({ x: m.x, t, counted });
        if (counted) stats.sent++;
        // A client that never hears back must not grow without bound.
        if (b.pending.length > 1000) b.pending.splice(0, b.pending.length - 1000);
      } else if (counted) {
        stats.sendFailures++;
      }
      // A late driver skips the slots it missed instead of bursting to
      // catch up (the shortfall shows in moves_sent vs expected_moves).
      k = Math.max(k + 1, Math.floor((performance.now() - movesStart) / period));
      later(tick, movesStart + (k + Math.random()) * period - performance.now());
    };
    later(tick, Math.random() * period);
  }

  stats.phase = "warmup";
  await sleep(opts.warmup * 1000);

  // The measuring window.
  // The histogram's samples include its own timer period: subtract it, so
  // 0 means "the event loop was never late".
  const LOOP_RES_MS = 5;
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RES_MS });
  // Memory with the clients joined: the median of readings every 500 ms
  // through the window.
  const rssSamples = [];
  const rssTimer = opts.pid ? setInterval(() => rssSamples.push(procRssKib(opts.pid)), 500) : null;
  if (opts.pid) rssSamples.push(procRssKib(opts.pid));
  const cpu0 = opts.pid ? procCpuSeconds(opts.pid) : null;
  const own0 = process.cpuUsage();
  const m0 = machineJiffies();
  const w0 = performance.now();
  stats.phase = "measure";
  loopDelay.enable();
  await sleep(opts.measure * 1000);
  const w1 = performance.now();
  const cpu1 = opts.pid ? procCpuSeconds(opts.pid) : null;
  const own1 = process.cpuUsage(own0);
  const m1 = machineJiffies();
  loopDelay.disable();
  if (rssTimer) clearInterval(rssTimer);
  const rssJoined = opts.pid ? medianOf(rssSamples) : null;
  const rssEnd = opts.pid ? procRssKib(opts.pid) : null;
  const windowS = (w1 - w0) / 1000;

  // Grace: moves sent near the end of the window may still come back.
  stats.phase = "grace";
  await sleep(opts.grace * 1000);
  stats.phase = "done";
  for (const t of timers) clearTimeout(t);

  let lost = 0;
  for (const b of bots) for (const m of b.pending) if (m.counted) lost++;
  let statesIn = 0, bytesIn = 0;
  for (const b of bots) { statesIn += b.statesIn; bytesIn += b.bytesIn; }
  const active = bots.filter((b) => b.conn && !b.closed).length;

  await Promise.all(bots.filter((b) => b.conn).map((b) => Promise.race([b.leave(), sleep(3000)])));

  const lat = stats.latencies.sort((a, b) => a - b);
  const q = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : null;
  const ownCpuS = (own1.user + own1.system) / 1e6;
  const result = {
    server: opts.server,
    clients: opts.clients,
    joined,
    active_at_end: active,
    join_ms: Math.round(joinMs),
    window_s: +windowS.toFixed(3),
    rate_hz: opts.rate,
    moves_sent: stats.sent,
    moves_acked: stats.acked,
    moves_superseded: stats.superseded,
    moves_lost: lost,
    send_failures: stats.sendFailures,
    latency_ms: {
      min: lat.length ? +lat[0].toFixed(3) : null,
      p50: q(0.5) === null ? null : +q(0.5).toFixed(3),
      p90: q(0.9) === null ? null : +q(0.9).toFixed(3),
      p99: q(0.99) === null ? null : +q(0.99).toFixed(3),
      max: lat.length ? +lat[lat.length - 1].toFixed(3) : null,
    },
    states_in_per_client_s: joined ? +(statesIn / joined / (windowS + opts.grace)).toFixed(2) : 0,
    bytes_in_per_client_s: joined ? Math.round(bytesIn / joined / (windowS + opts.grace)) : 0,
    server_pid: opts.pid,
    server_cpu_pct: opts.pid
      ? +(100 * (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / windowS).toFixed(2)
      : null,
    // User (the server's own code) and kernel (its syscalls, and on
    // loopback the receiving side's TCP work done in its sends) apart.
    server_cpu_user_pct: opts.pid ? +(100 * (cpu1.user - cpu0.user) / windowS).toFixed(2) : null,
    server_cpu_sys_pct: opts.pid ? +(100 * (cpu1.system - cpu0.system) / windowS).toFixed(2) : null,
    server_rss_base_kib: rssBase,
    server_rss_joined_kib: rssJoined,
    server_rss_end_kib: rssEnd,
    driver_cpu_pct: +(100 * ownCpuS / windowS).toFixed(2),
    // Everything that ran on the machine in the window (server, driver and
    // whatever else), in % of one core: up to 100 × nproc.
    machine_cpu_pct: +(100 * (m1.busy - m0.busy) / clockTicks / windowS).toFixed(2),
    expected_moves: joined * Math.round(opts.rate * windowS),
    driver_loop_delay_ms: {
      p50: +Math.max(0, loopDelay.percentile(50) / 1e6 - LOOP_RES_MS).toFixed(3),
      p99: +Math.max(0, loopDelay.percentile(99) / 1e6 - LOOP_RES_MS).toFixed(3),
      max: +Math.max(0, loopDelay.max / 1e6 - LOOP_RES_MS).toFixed(3),
    },
    raw_samples: stats.rawSamples,
    join_errors: [...new Set(joinErrors)].slice(0, 5),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  process.exit(joined === opts.clients ? 0 : 1);
}

main().catch((e) => {
  log(`failed: ${e && e.stack || e}`);
  process.exit(1);
});
