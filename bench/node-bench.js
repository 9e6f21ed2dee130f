#!/usr/bin/env node
// bench/node-bench.js: the Node.js binding against the C tools, side by side
// in one run (docs/node.md has the figures).
//
//   client:  round trips per second through mdp-broker to C workers
//            (mdp-worker --echo), with IN_FLIGHT requests in flight, of
//            a Node client (libmdp's Client) and of the C client
//            (mdp-request -n COUNT -c IN_FLIGHT);
//   broker:  CPU time per round trip of a broker hosted in Node (libmdp's
//            Broker, in a Node process of its own) and of mdp-broker, each
//            driven by mdp-request through mdp-worker, read from
//            /proc/PID/stat.
//
// Usage: node bench/node-bench.js [--count N] [--in-flight N] [--rounds N]
//        [--workers N] [--tools DIR]
// Build first: scripts/test-node (or ninja -C build-node tools/mdp-broker
// tools/mdp-worker tools/mdp-request, and npm install in bindings/node).
// Runs on 127.0.0.1 only.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn, execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const mod = path.join(root, 'bindings', 'node');

function arg(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
}

// ---- roles run in child processes -------------------------------------------

async function roleClient(ep, count, inFlight) {
  const { Client } = require(mod);
  const client = new Client({ brokers: [ep], timeout: 30000, maxSockets: inFlight });
  // Warm-up: open the sockets once.
  await Promise.all(Array.from({ length: inFlight }, () => client.request('echo', 'x')));
  let sent = 0;
  let done = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  await new Promise((resolve) => {
    const one = () => {
      sent++;
      client.request('echo', 'x').then(() => { done++; }, () => { done++; failed++; }).then(() => {
        if (sent < count) one();
        else if (done === count) resolve();
      });
    };
    for (let i = 0; i < inFlight && sent < count; i++) one();
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await client.close();
  console.log(JSON.stringify({ rate: count / secs, failed }));
}

function roleBroker(ep) {
  const { Broker } = require(mod);
  const b = new Broker({ bind: ep });
  console.log('ready');
  process.on('SIGTERM', () => b.close());
}

// ---- the orchestra --------------------------------------------------------------

const tck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

function cpuSecs(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / tck; // utime + stime
}

function startProc(cmd, args) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = '';
  p.err = '';
  p.stdout.on('data', (d) => { p.out += d; });
  p.stderr.on('data', (d) => { p.err += d; });
  p.done = new Promise((resolve) => p.on('exit', (code) => resolve(code)));
  return p;
}

async function waitOut(p, re) {
  while (!re.test(p.out)) {
    if (p.exitCode !== null) throw new Error(`${p.spawnargs.join(' ')} exited: ${p.err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (n) => new Promise((r) => setTimeout(r, n));
let port = 20000 + (process.pid % 20000);
const nextEp = () => `tcp://127.0.0.1:${port++}`;

async function cLoad(tools, ep, count, inFlight) {
  const p = startProc(path.join(tools, 'mdp-request'),
    ['-b', ep, '-t', '30', '-n', String(count), '-c', String(inFlight), 'echo', 'x']);
  const code = await p.done;
  const m = /(\d+) requests: (\d+) ok, (\d+) failed, ([\d.]+)\/s/.exec(p.out);
  if (code !== 0 || !m) throw new Error(`mdp-request failed (${code}): ${p.out} ${p.err}`);
  return { rate: Number(m[4]), failed: Number(m[3]) };
}

async function nodeLoad(ep, count, inFlight) {
  const p = startProc(process.execPath, [__filename, '--role', 'client', ep, String(count), String(inFlight)]);
  const code = await p.done;
  if (code !== 0) throw new Error(`node client failed: ${p.err}`);
  return JSON.parse(p.out.trim().split('\n').pop());
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main() {
  const count = Number(arg('count', 30000));
  const inFlight = Number(arg('in-flight', 1000));
  const rounds = Number(arg('rounds', 3));
  const nworkers = Number(arg('workers', 16));
  const tools = arg('tools', path.join(root, 'build-node', 'tools'));
  for (const t of ['mdp-broker', 'mdp-worker', 'mdp-request']) {
    if (!fs.existsSync(path.join(tools, t))) throw new Error(`${t} not built in ${tools}`);
  }
  const procs = [];
  try {
    // Part 1: clients through mdp-broker to C workers.
    const ep = nextEp();
    const broker = startProc(path.join(tools, 'mdp-broker'), ['-b', ep]);
    procs.push(broker);
    const worker = startProc(path.join(tools, 'mdp-worker'), ['-b', ep, '-c', String(nworkers), '--echo', 'echo']);
    procs.push(worker);
    await sleep(500);
    await cLoad(tools, ep, 2000, 100); // warm-up
    const rc = [], rn = [], cpuC = [];
    for (let i = 0; i < rounds; i++) {
      let c0 = cpuSecs(broker.pid);
      const c = await cLoad(tools, ep, count, inFlight);
      cpuC.push((cpuSecs(broker.pid) - c0) / count);
      rc.push(c.rate);
      c0 = cpuSecs(broker.pid);
      const n = await nodeLoad(ep, count, inFlight);
      cpuC.push((cpuSecs(broker.pid) - c0) / (count + inFlight));
      rn.push(n.rate);
      if (c.failed || n.failed) throw new Error('requests failed');
    }
    worker.kill('SIGTERM');
    broker.kill('SIGTERM');
    await Promise.all([worker.done, broker.done]);

    // Part 2: a broker hosted in Node, the same load (C client, C workers).
    const ep2 = nextEp();
    const nb = startProc(process.execPath, [__filename, '--role', 'broker', ep2]);
    procs.push(nb);
    await waitOut(nb, /ready/);
    const w2 = startProc(path.join(tools, 'mdp-worker'), ['-b', ep2, '-c', String(nworkers), '--echo', 'echo']);
    procs.push(w2);
    await sleep(500);
    await cLoad(tools, ep2, 2000, 100);
    const cpuN = [], rnb = [];
    for (let i = 0; i < rounds; i++) {
      const c0 = cpuSecs(nb.pid);
      const r = await cLoad(tools, ep2, count, inFlight);
      cpuN.push((cpuSecs(nb.pid) - c0) / count);
      rnb.push(r.rate);
    }
    w2.kill('SIGTERM');
    nb.kill('SIGTERM');
    await Promise.all([w2.done, nb.done]);

    const us = (x) => (x * 1e6).toFixed(1);
    console.log(`node ${process.version}, ${count} requests x ${rounds} rounds, ${inFlight} in flight, ` +
      `${nworkers} C worker slots (mdp-worker --echo), 127.0.0.1`);
    console.log(`client round trips/s (median): C mdp-request ${median(rc).toFixed(0)}, ` +
      `Node Client ${median(rn).toFixed(0)}  -> Node/C = ${(median(rn) / median(rc)).toFixed(2)}`);
    console.log(`  each round: C ${rc.map((x) => x.toFixed(0)).join(' ')}; Node ${rn.map((x) => x.toFixed(0)).join(' ')}`);
    console.log(`broker CPU per round trip (median): mdp-broker ${us(median(cpuC))} us, ` +
      `broker in Node ${us(median(cpuN))} us -> Node/C = ${(median(cpuN) / median(cpuC)).toFixed(2)}`);
    console.log(`  round trips/s through the broker in Node (C client): ${rnb.map((x) => x.toFixed(0)).join(' ')}`);
  } finally {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  }
}

if (process.argv[2] === '--role') {
  if (process.argv[3] === 'client') {
    roleClient(process.argv[4], Number(process.argv[5]), Number(process.argv[6]))
      .catch((e) => { console.error(e); process.exit(1); });
  } else {
    roleBroker(process.argv[4]);
  }
} else {
  main().catch((e) => { console.error(`node-bench: ${e.message}`); process.exit(1); });
}
