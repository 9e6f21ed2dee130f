'use strict';
// Shared by the tests: the C tools of the tree's build, waiting for a
// condition with a deadline (no sleep-and-hope), child processes that are
// always reaped.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');

const root = path.resolve(__dirname, '..', '..', '..');

// Time bounds scale with MDP_TEST_SLOW (a loaded CI machine).
const SLOW = Number(process.env.MDP_TEST_SLOW || 1);
const ms = (n) => n * SLOW;

// The directory holding mdp-broker, mdp-worker and mdp-request:
// $MDP_TOOLS_DIR (scripts/test-node sets it), else a build directory of the
// tree that has them; null when none is built.
function toolsDir() {
  const cands = [];
  if (process.env.MDP_TOOLS_DIR) cands.push(process.env.MDP_TOOLS_DIR);
  for (const d of ['build-node', 'build']) cands.push(path.join(root, d, 'tools'));
  for (const d of cands) {
    if (['mdp-broker', 'mdp-worker', 'mdp-request'].every((t) => fs.existsSync(path.join(d, t)))) return d;
  }
  return null;
}

async function waitFor(cond, timeoutMs, what) {
  const end = Date.now() + ms(timeoutMs);
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what || 'a condition'}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const children = new Set();
process.on('exit', () => { for (const c of children) try { c.kill('SIGKILL'); } catch (e) { /* gone */ } });

// Starts a child; resolves `exited` with {code, signal}; collects output.
function start(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(p);
  p.out = '';
  p.err = '';
  p.stdout.on('data', (d) => { p.out += d; });
  p.stderr.on('data', (d) => { p.err += d; });
  p.exited = new Promise((resolve) => p.on('exit', (code, signal) => {
    children.delete(p);
    resolve({ code, signal });
  }));
  return p;
}

async function stop(p, signal = 'SIGTERM') {
  if (p.exitCode === null && p.signalCode === null) p.kill(signal);
  return p.exited;
}

function tmpIpc(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mdp-node-'));
  return `ipc://${path.join(dir, name)}`;
}

module.exports = { root, ms, toolsDir, waitFor, start, stop, tmpIpc };
