'use strict';
// Life on Node's loop: what keeps a process alive, what lets it exit, and
// worker_threads threads with objects of their own.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { Worker: Thread } = require('worker_threads');
const { ms, start, stop, waitFor } = require('./helpers');

const mod = JSON.stringify(path.resolve(__dirname, '..'));

// Runs `code` in a fresh node process (with `m` = the module).
function child(code) {
  return start(process.execPath, ['-e', `const m = require(${mod});\n${code}`]);
}

test('a process whose objects are all closed exits by itself', async () => {
  const p = child(`
    (async () => {
      const b = new m.Broker({ bind: 'tcp://127.0.0.1:*' });
      const w = new m.Worker({ broker: b.endpoint, service: 'echo', concurrency: 3 }, (f) => f);
      const c = new m.Client({ brokers: [b.endpoint], timeout: 10000 });
      const r = await c.request('echo', 'hi');
      console.log(String(r[0]));
      // close() in any order; nothing else to wait for
      c.close(); w.close(); b.close();
    })();`);
  const t0 = Date.now();
  const r = await Promise.race([p.exited, new Promise((res) => setTimeout(res, ms(10000), 'hung'))]);
  if (r === 'hung') await stop(p, 'SIGKILL');
  assert.notEqual(r, 'hung', 'the process did not exit after closing everything');
  assert.equal(r.code, 0, p.err);
  assert.equal(p.out.trim(), 'hi');
  assert.ok(Date.now() - t0 < ms(10000));
});

test('an open broker, worker or client keeps the process alive, like a server socket', async () => {
  for (const make of [
    "new m.Broker({ bind: 'tcp://127.0.0.1:*' })",
    "new m.Worker({ broker: 'tcp://127.0.0.1:1', service: 's' }, (f) => f)",
    "new m.Client({ brokers: ['tcp://127.0.0.1:1'] })",
  ]) {
    const p = child(`const o = ${make}; console.log('open');`);
    await waitFor(() => p.out.includes('open'), 10000, 'the child to start');
    // Alive well after its script has ended...
    const r = await Promise.race([p.exited, new Promise((res) => setTimeout(res, 700, 'alive'))]);
    assert.equal(r, 'alive', `${make} did not keep the process alive: ${p.err}`);
    await stop(p, 'SIGKILL');
  }
  // ...and closing it from a timer lets the process go.
  const p = child(`
    const b = new m.Broker({ bind: 'tcp://127.0.0.1:*' });
    setTimeout(() => b.close().then(() => console.log('closed')), 300);`);
  const r = await p.exited;
  assert.equal(r.code, 0, p.err);
  assert.equal(p.out.trim(), 'closed');
});

test('an unref()ed client does not keep the process alive', async () => {
  const p = child(`
    const c = new m.Client({ brokers: ['tcp://127.0.0.1:1'] });
    c.unref();
    process.on('exit', () => console.log('exit'));`);
  const r = await Promise.race([p.exited, new Promise((res) => setTimeout(res, ms(10000), 'hung'))]);
  if (r === 'hung') await stop(p, 'SIGKILL');
  assert.notEqual(r, 'hung');
  assert.equal(p.out.trim(), 'exit');
});

test('a worker_threads thread runs its own broker, worker and client on its own loop', async () => {
  const code = `
    const { parentPort } = require('worker_threads');
    const m = require(${mod});
    (async () => {
      const b = new m.Broker({ bind: 'tcp://127.0.0.1:*' });
      const w = new m.Worker({ broker: b.endpoint, service: 'thr' }, (f) => ['thread', f[0]]);
      const c = new m.Client({ brokers: [b.endpoint], timeout: 10000 });
      const r = await c.request('thr', 'x');
      parentPort.postMessage(r.map(String));
      await c.close(); await w.close(); await b.close();
    })();`;
  // The main thread has objects of its own at the same time.
  const { Broker, Worker, Client } = require('..');
  const b = new Broker({ bind: 'tcp://127.0.0.1:*' });
  const w = new Worker({ broker: b.endpoint, service: 'main' }, (f) => ['main', f[0]]);
  const c = new Client({ brokers: [b.endpoint], timeout: ms(10000) });
  const threads = [1, 2].map(() => new Thread(code, { eval: true }));
  const results = await Promise.all(threads.map((th) => new Promise((resolve, reject) => {
    let msg = null;
    th.on('message', (m) => { msg = m; });
    th.on('error', reject);
    th.on('exit', (exitCode) => resolve({ exitCode, msg }));
  })));
  for (const r of results) {
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.msg, ['thread', 'x']);
  }
  assert.deepEqual((await c.request('main', 'y')).map(String), ['main', 'y']);
  await c.close(); await w.close(); await b.close();
});

test('a thread that ends with objects open has them closed for it', async () => {
  // terminate() while a broker, a worker and a client with a request in
  // flight are open: the environment's cleanup closes them; no crash, no
  // handle left on the thread's loop (Node would abort).
  const code = `
    const { parentPort } = require('worker_threads');
    const m = require(${mod});
    const b = new m.Broker({ bind: 'tcp://127.0.0.1:*' });
    const w = new m.Worker({ broker: b.endpoint, service: 'slow' }, () => new Promise(() => {}));
    const c = new m.Client({ brokers: [b.endpoint], timeout: 60000 });
    // A lent 1 MiB frame is held by libmdp (for a retry) when the thread ends.
    c.request('slow', [Buffer.alloc(1 << 20), 'x']).catch(() => {});
    setTimeout(() => parentPort.postMessage('running'), 200);`;
  for (const how of ['terminate', 'exit']) {
    const th = new Thread(code + (how === 'exit' ? "\nsetTimeout(() => process.exit(3), 400);" : ''),
      { eval: true });
    await new Promise((resolve) => th.once('message', resolve));
    if (how === 'terminate') await th.terminate();
    const exitCode = await new Promise((resolve) => (th.threadId === -1 ? resolve(th.exitCode) : th.once('exit', resolve)));
    assert.ok(exitCode === 1 || exitCode === 3 || exitCode === undefined, `exit code ${exitCode}`);
  }
  // The process goes on working.
  const { Broker } = require('..');
  const b = new Broker({ bind: 'tcp://127.0.0.1:*' });
  await b.close();
});

test('JavaScript never runs inside a libmdp call: closing from a reply is safe', async () => {
  const { Broker, Worker, Client } = require('..');
  const b = new Broker({ bind: 'tcp://127.0.0.1:*' });
  const w = new Worker({ broker: b.endpoint, service: 'e', concurrency: 4 }, (f) => f);
  const c = new Client({ brokers: [b.endpoint], timeout: ms(10000) });
  // Many replies arrive in one batch; the first continuation closes the
  // client, which cancels the rest: each promise settles exactly once.
  const all = Array.from({ length: 200 }, (_, i) => c.request('e', String(i)));
  let settled = 0;
  all.forEach((p) => p.then(() => { settled++; c.close(); }, () => { settled++; }));
  await Promise.allSettled(all);
  assert.equal(settled, 200);
  await c.close();
  // Cancelling from inside a stream's loop body, and closing the worker
  // from its own handler, are safe too.
  const c2 = new Client({ brokers: [b.endpoint], timeout: ms(10000) });
  let n = 0;
  for await (const part of c2.stream('e', 'z')) { n++; void part; await c2.close(); }
  assert.equal(n, 1);
  const w2 = new Worker({ broker: b.endpoint, service: 'selfclose' }, (f) => { w2.close(); return f; });
  const c3 = new Client({ brokers: [b.endpoint], timeout: ms(10000) });
  assert.deepEqual((await c3.request('selfclose', 'q')).map(String), ['q']);
  await c3.close(); await w2.close(); await w.close(); await b.close();
});

test('examples/demo.js (docs/node.md) runs and exits by itself', async () => {
  const p = start(process.execPath, [path.join(__dirname, '..', 'examples', 'demo.js')]);
  const r = await Promise.race([p.exited, new Promise((res) => setTimeout(res, ms(20000), 'hung'))]);
  if (r === 'hung') await stop(p, 'SIGKILL');
  assert.notEqual(r, 'hung');
  assert.equal(r.code, 0, p.err);
  assert.equal(p.out, 'reply: HELLO NODE\npart: got 1 bytes\npart: got 2 bytes\npart: A BC\n' +
    'answered: 1000\nerror: ETIMEDOUT\n');
});

test('threads share libzmq\'s context: a thread\'s client reaches the main thread\'s broker over inproc://', async () => {
  const { Broker, Worker } = require('..');
  const b = new Broker({ bind: 'inproc://mdp-node-test' });
  const w = new Worker({ broker: 'inproc://mdp-node-test', service: 'inp' }, (f) => ['main', ...f]);
  const th = new Thread(`
    const { parentPort } = require('worker_threads');
    const m = require(${mod});
    const c = new m.Client({ brokers: ['inproc://mdp-node-test'], timeout: 10000 });
    c.request('inp', 'from thread').then((r) => parentPort.postMessage(r.map(String)))
      .finally(() => c.close());`, { eval: true });
  const msg = await new Promise((resolve, reject) => { th.once('message', resolve); th.once('error', reject); });
  assert.deepEqual(msg, ['main', 'from thread']);
  assert.equal(await new Promise((r) => th.once('exit', r)), 0);
  await w.close();
  await b.close();
});
