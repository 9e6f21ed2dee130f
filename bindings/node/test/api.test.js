'use strict';
// A broker, workers and clients in one Node process, all on Node's loop.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Broker, Worker, Client } = require('..');
const { ms, waitFor } = require('./helpers');

const sleep = (n) => new Promise((r) => setTimeout(r, n));

// A broker on a free port, closed (with everything given to `also`) at the end.
async function withBroker(t, opts = {}) {
  const broker = new Broker({ bind: ['tcp://127.0.0.1:*'], ...opts });
  const owned = [];
  t.after(async () => {
    await Promise.all(owned.map((o) => o.close()));
    await broker.close();
  });
  return { broker, ep: broker.endpoint, own: (o) => { owned.push(o); return o; } };
}

test('request and reply through a broker hosted in Node', async (t) => {
  const { ep, own } = await withBroker(t);
  assert.match(ep, /^tcp:\/\/127\.0\.0\.1:\d+$/);
  const worker = own(new Worker({ broker: ep, service: 'echo' }, (frames) => frames));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  const big = Buffer.alloc(100000, 7);
  const reply = await client.request('echo', ['hello', Buffer.from([0, 1, 2]), big, new Uint8Array([9, 8])]);
  assert.equal(reply.length, 4);
  assert.ok(reply.every((f) => Buffer.isBuffer(f)));
  assert.equal(reply[0].toString(), 'hello');
  assert.deepEqual([...reply[1]], [0, 1, 2]);
  assert.ok(reply[2].equals(big)); // large frames arrive without a copy
  assert.deepEqual([...reply[3]], [9, 8]);
  // No frame at all sends one empty frame (MDP needs one).
  const empty = await client.request('echo', []);
  assert.equal(empty.length, 1);
  assert.equal(empty[0].length, 0);
  assert.equal(worker.stats().requests, 2);
});

test('frames of 64 KiB or more go out without a copy, and libzmq gives them back', async (t) => {
  const { lentFrames } = require('..');
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'echo' }, (frames) => frames));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  const before = lentFrames();
  const big = Buffer.alloc(1 << 20);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const small = Buffer.alloc(60 * 1024, 1);
  const reply = await client.request('echo', [big, small, new Uint8Array(big.buffer, big.byteOffset, 70000)]);
  assert.ok(reply[0].equals(big));
  assert.ok(reply[1].equals(small));
  assert.ok(reply[2].equals(big.subarray(0, 70000)));
  // The request's two large frames, and the worker's reply (the Buffers it
  // received, lent back out): four lent, none of the small ones.
  const after = lentFrames();
  assert.equal(after.lent - before.lent, 4);
  await waitFor(() => lentFrames().outstanding === 0 && lentFrames().released === lentFrames().lent,
    5000, 'libzmq to release the lent frames');
});

test('a handler may return a string, a Buffer, nothing, or resolve later', async (t) => {
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'str' }, () => 'text'));
  own(new Worker({ broker: ep, service: 'none' }, () => undefined));
  own(new Worker({ broker: ep, service: 'later' }, async (f) => {
    await sleep(20);
    return [Buffer.from('late'), f[0]];
  }));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  assert.deepEqual((await client.request('str', 'x')).map(String), ['text']);
  assert.deepEqual((await client.request('none', 'x')).map(String), ['']);
  assert.deepEqual((await client.request('later', 'q')).map(String), ['late', 'q']);
});

test('PARTIAL streams: for await yields every PARTIAL, then the FINAL', async (t) => {
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'count' }, async (frames, reply) => {
    const n = Number(frames[0]);
    for (let i = 0; i < n; i++) {
      reply.partial([String(i)]);
      if (i % 10 === 0) await sleep(1);
    }
    return 'end';
  }));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  const parts = [];
  for await (const part of client.stream('count', ['50'])) parts.push(part[0].toString());
  assert.equal(parts.length, 51);
  assert.deepEqual(parts.slice(0, 3), ['0', '1', '2']);
  assert.equal(parts[50], 'end');
  // request() resolves to the FINAL and passes PARTIALs to onPartial.
  const seen = [];
  const fin = await client.request('count', ['3'], { onPartial: (p) => seen.push(String(p[0])) });
  assert.deepEqual(seen, ['0', '1', '2']);
  assert.equal(String(fin[0]), 'end');
});

test('a second FINAL, or a PARTIAL after the FINAL, throws', async (t) => {
  const { ep, own } = await withBroker(t);
  const errors = [];
  own(new Worker({ broker: ep, service: 'twice' }, (frames, reply) => {
    setTimeout(() => {
      try { reply.partial('late'); } catch (e) { errors.push(e.code); }
    }, 10);
    return 'once';
  }));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  assert.deepEqual((await client.request('twice', 'x')).map(String), ['once']);
  await waitFor(() => errors.length === 1, 2000, 'the late partial');
  assert.deepEqual(errors, ['ESTATE']);
});

test('a handler that throws or rejects is answered "error: MESSAGE" and reported', async (t) => {
  const { ep, own } = await withBroker(t);
  const reported = [];
  const w1 = own(new Worker({ broker: ep, service: 'throws' }, () => { throw new Error('boom'); }));
  const w2 = own(new Worker({ broker: ep, service: 'rejects' }, async () => { throw new Error('later boom'); }));
  const w3 = own(new Worker({ broker: ep, service: 'custom', errorReply: (e) => ['ERR', e.message] },
    () => { throw new Error('x'); }));
  const w4 = own(new Worker({ broker: ep, service: 'badframes' }, () => [{ not: 'a frame' }]));
  for (const w of [w1, w2, w3, w4]) w.on('handlerError', (e) => reported.push(e.message));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  assert.deepEqual((await client.request('throws', 'a')).map(String), ['error: boom']);
  assert.deepEqual((await client.request('rejects', 'a')).map(String), ['error: later boom']);
  assert.deepEqual((await client.request('custom', 'a')).map(String), ['ERR', 'x']);
  const bad = await client.request('badframes', 'a');
  assert.match(String(bad[0]), /^error: /);
  assert.equal(reported.length, 4);
  assert.deepEqual(reported.slice(0, 3).sort(), ['boom', 'later boom', 'x']);
});

test('many requests in progress at once on one worker (concurrency)', async (t) => {
  const { ep, own } = await withBroker(t);
  let now = 0;
  let most = 0;
  const worker = own(new Worker({ broker: ep, service: 'slow', concurrency: 8 }, async (f) => {
    now++;
    most = Math.max(most, now);
    await sleep(50);
    now--;
    return f;
  }));
  const client = own(new Client({ brokers: [ep], timeout: ms(10000) }));
  assert.equal(worker.stats().slots, 8);
  const replies = await Promise.all(Array.from({ length: 32 }, (_, i) => client.request('slow', [String(i)])));
  assert.deepEqual(replies.map((r) => Number(r[0])), Array.from({ length: 32 }, (_, i) => i));
  assert.ok(most >= 4, `at most ${most} requests were in progress at once`);
  assert.ok(most <= 8);
});

test('thousands of requests in flight on one client', async (t) => {
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'echo', concurrency: 4 }, (f) => f));
  const client = own(new Client({ brokers: [ep], timeout: ms(30000), maxSockets: 500 }));
  const n = 3000;
  const all = Array.from({ length: n }, (_, i) => client.request('echo', [String(i)]));
  assert.ok(client.pending >= n - 1);
  const replies = await Promise.all(all);
  for (let i = 0; i < n; i++) assert.equal(String(replies[i][0]), String(i));
  assert.equal(client.stats().finals, n);
  assert.equal(client.pending, 0);
});

test('a request to a service nobody serves times out with ETIMEDOUT after its retries', async (t) => {
  const { ep, own } = await withBroker(t);
  const client = own(new Client({ brokers: [ep], timeout: 200, retries: 1 }));
  const t0 = Date.now();
  await assert.rejects(client.request('nobody', 'x'), (e) => e instanceof Error && e.code === 'ETIMEDOUT');
  const took = Date.now() - t0;
  assert.ok(took >= 350, `gave up after ${took} ms, before two timeouts`);
  assert.equal(client.stats().retries, 1);
  // Per-request settings win over the client's.
  await assert.rejects(client.request('nobody', 'x', { timeout: 50, retries: 0 }), { code: 'ETIMEDOUT' });
  // A stream fails the same way.
  await assert.rejects((async () => { for await (const p of client.stream('nobody', 'x', { timeout: 50, retries: 0 })) void p; })(),
    { code: 'ETIMEDOUT' });
});

test('an AbortSignal cancels a request (ECANCELED, AbortError)', async (t) => {
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'slow' }, async () => { await sleep(ms(2000)); return 'late'; }));
  const client = own(new Client({ brokers: [ep], timeout: ms(10000) }));
  const ac = new AbortController();
  const p = client.request('slow', 'x', { signal: ac.signal });
  setTimeout(() => ac.abort(new Error('user gave up')), 50);
  await assert.rejects(p, (e) => e.code === 'ECANCELED' && e.name === 'AbortError' && e.cause.message === 'user gave up');
  assert.equal(client.pending, 0);
  // An already aborted signal rejects at once, and sends nothing.
  const sent = client.stats().requests;
  await assert.rejects(client.request('slow', 'x', { signal: AbortSignal.abort() }), { code: 'ECANCELED', name: 'AbortError' });
  assert.equal(client.stats().requests, sent);
  // AbortSignal.timeout works too.
  await assert.rejects(client.request('slow', 'x', { signal: AbortSignal.timeout(50) }), { code: 'ECANCELED' });
});

test('leaving a stream early cancels its request', async (t) => {
  const { ep, own } = await withBroker(t);
  own(new Worker({ broker: ep, service: 'endless' }, async (f, reply) => {
    for (let i = 0; i < 20; i++) { reply.partial(String(i)); await sleep(20); }
    return 'end';
  }));
  const client = own(new Client({ brokers: [ep], timeout: ms(5000) }));
  let got = 0;
  for await (const part of client.stream('endless', 'x')) {
    void part;
    if (++got === 2) break;
  }
  assert.equal(got, 2);
  assert.equal(client.pending, 0);
  assert.equal(client.stats().cancelled, 1);
});

test('closing a client fails its pending requests with ECANCELED', async (t) => {
  const { ep } = await withBroker(t);
  const client = new Client({ brokers: [ep], timeout: ms(10000) });
  const p = client.request('nobody', 'x');
  const closed = client.close();
  await assert.rejects(p, { code: 'ECANCELED' });
  await closed;
  assert.equal(client.closed, true);
  await assert.rejects(client.request('nobody', 'x'), { code: 'ECLOSING' });
  await client.close(); // a second close is a no-op
});

test('worker.close() finishes the requests in progress', async (t) => {
  const { ep, own } = await withBroker(t);
  let started = 0;
  const worker = new Worker({ broker: ep, service: 'slow', concurrency: 2 }, async () => {
    started++;
    await sleep(200);
    return 'done';
  });
  const client = own(new Client({ brokers: [ep], timeout: ms(10000) }));
  const p1 = client.request('slow', 'a');
  const p2 = client.request('slow', 'b');
  await waitFor(() => started === 2, 5000, 'both requests to start');
  const closing = worker.close();
  assert.deepEqual((await p1).map(String), ['done']);
  assert.deepEqual((await p2).map(String), ['done']);
  await closing;
  assert.equal(worker.closed, true);
});

test('worker.close({ abandon: true }) does not wait for a handler that never ends', async (t) => {
  const { ep, own } = await withBroker(t);
  let started = false;
  const worker = new Worker({ broker: ep, service: 'hang' }, () => { started = true; return new Promise(() => {}); });
  const client = own(new Client({ brokers: [ep], timeout: 300, retries: 0 }));
  const p = client.request('hang', 'x');
  await waitFor(() => started, 5000, 'the handler to start');
  await worker.close({ abandon: true });
  assert.equal(worker.closed, true);
  await assert.rejects(p, { code: 'ETIMEDOUT' });
});

test('worker life-cycle events: registered, then disconnected when the broker goes', async (t) => {
  // The broker heartbeats as often as the worker expects: 'registered'
  // comes with its first HEARTBEAT.
  const broker = new Broker({ bind: ['tcp://127.0.0.1:*'], heartbeatIntervalMs: 100 });
  const ep = broker.endpoint;
  const worker = new Worker({ broker: ep, service: 'ev', heartbeatIntervalMs: 100, heartbeatLiveness: 3 }, (f) => f);
  t.after(() => worker.close());
  await new Promise((r) => worker.once('registered', r));
  const lost = new Promise((r) => worker.once('disconnected', r));
  await broker.close(); // sends DISCONNECT to its workers
  const err = await lost;
  assert.ok(['ECANCELED', 'ETIMEDOUT'].includes(err.code), err.code);
});

test('options: camelCase C names, dialects, logs, errors for bad ones', async (t) => {
  assert.throws(() => new Broker({ bind: ['nonsense://x'] }), (e) => typeof e.code === 'string' && e.code.startsWith('E'));
  assert.throws(() => new Broker({ bind: 'tcp://localhost:5555' }), { code: 'EINVAL' });
  assert.throws(() => new Client({ brokers: ['tcp://127.0.0.1:1'], timeoutMss: 5 }), TypeError);
  assert.throws(() => new Client({ brokers: ['tcp://127.0.0.1:1'], dialect: 'mdp99' }), TypeError);
  assert.throws(() => new Client({ brokers: ['tcp://127.0.0.1:1'], timeoutMs: 0 }), { code: 'EINVAL' });
  assert.throws(() => new Client({ brokers: ['tcp://127.0.0.1:1'], curveServerKey: 'short' }), { code: 'EINVAL' });
  assert.throws(() => new Worker({ broker: 'tcp://127.0.0.1:1', service: 'mmi.x' }, () => 1), { code: 'ESERVICE' });
  assert.throws(() => new Worker({ broker: 'tcp://127.0.0.1:1', service: 's' }), TypeError);
  const logs = [];
  const { ep, own } = await withBroker(t, { dialects: ['rfc18', 'majortomo'], maxQueue: 10, logLevel: 'debug' });
  void logs;
  // A Majortomo-dialect worker and client through the broker.
  own(new Worker({ broker: ep, service: 'mt', dialect: 'majortomo' }, (f) => f));
  const client = own(new Client({ brokers: [ep], dialect: 'majortomo', timeout: ms(5000), logLevel: 'debug' }));
  client.on('log', (l) => logs.push(l));
  assert.deepEqual((await client.request('mt', 'x')).map(String), ['x']);
  // Service names are 1..255 bytes.
  await assert.rejects(client.request('', 'x'), { code: 'ESERVICE' });
  await assert.rejects(client.request('s'.repeat(256), 'x'), { code: 'ESERVICE' });
  await assert.rejects(client.request('mt', [{}]), TypeError);
  assert.throws(() => client.stream('', 'x'), { code: 'ESERVICE' });
});

test('broker logs reach its "log" listeners', async (t) => {
  const broker = new Broker({ bind: ['tcp://127.0.0.1:*'], logLevel: 'debug' });
  const lines = [];
  broker.on('log', (l) => lines.push(l));
  const worker = new Worker({ broker: broker.endpoint, service: 'logged' }, (f) => f);
  await waitFor(() => lines.some((l) => /logged/.test(l.message)), 5000, 'a log line about the worker');
  assert.ok(lines.every((l) => ['error', 'warn', 'info', 'debug'].includes(l.level)));
  await worker.close();
  await broker.close();
});

test('CURVE: keys by option, the broker lets in only the listed clients and workers', async (t) => {
  const { curveKeypair } = require('..');
  const server = curveKeypair();
  const cli = curveKeypair();
  const wrk = curveKeypair();
  const stranger = curveKeypair();
  assert.equal(server.publicKey.length, 40);
  const broker = new Broker({ bind: 'tcp://127.0.0.1:*', curveSecretKey: server.secretKey,
    curveAllowKeys: [cli.publicKey, wrk.publicKey] });
  const ep = broker.endpoint;
  const worker = new Worker({ broker: ep, service: 'sec', curveServerKey: server.publicKey,
    curvePublicKey: wrk.publicKey, curveSecretKey: wrk.secretKey }, (f) => ['secret', ...f]);
  const client = new Client({ brokers: [ep], timeout: ms(5000), curveServerKey: server.publicKey,
    curvePublicKey: cli.publicKey, curveSecretKey: cli.secretKey });
  const intruder = new Client({ brokers: [ep], timeout: 300, retries: 0, curveServerKey: server.publicKey,
    curvePublicKey: stranger.publicKey, curveSecretKey: stranger.secretKey });
  const plain = new Client({ brokers: [ep], timeout: 300, retries: 0 });
  t.after(async () => {
    await Promise.all([client.close(), intruder.close(), plain.close(), worker.close()]);
    await broker.close();
  });
  assert.deepEqual((await client.request('sec', 'x')).map(String), ['secret', 'x']);
  await assert.rejects(intruder.request('sec', 'x'), { code: 'ETIMEDOUT' });
  await assert.rejects(plain.request('sec', 'x'), { code: 'ETIMEDOUT' });
  assert.throws(() => new Client({ brokers: [ep], curveServerKey: server.publicKey }), { code: 'EINVAL' });
});
