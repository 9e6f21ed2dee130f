'use strict';
// Node's objects with the tree's C tools, as real processes: mdp-broker,
// mdp-worker and mdp-request.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { Broker, Worker, Client } = require('..');
const { ms, toolsDir, waitFor, start, stop, tmpIpc } = require('./helpers');

const tools = toolsDir();
const skip = tools === null ? 'the C tools are not built (scripts/test-node builds them)' : false;
const tool = (name) => path.join(tools, name);

// mdp-broker on `ep`, heartbeating every 200 ms; resolves once it answers MMI.
async function cBroker(ep) {
  const p = start(tool('mdp-broker'), ['-b', ep, '-i', '0.2', '--heartbeat-liveness', '5']);
  const probe = new Client({ brokers: [ep], timeout: 300, retries: 0 });
  try {
    await waitFor(async () => {
      if (p.exitCode !== null) throw new Error(`mdp-broker exited: ${p.err}`);
      try { await probe.request('mmi.service', 'x'); return true; } catch (e) { return false; }
    }, 10000, 'mdp-broker to answer');
  } finally {
    await probe.close();
  }
  return p;
}

test('a Node client through mdp-broker to mdp-worker', { skip }, async (t) => {
  const ep = tmpIpc('broker');
  const broker = await cBroker(ep);
  const worker = start(tool('mdp-worker'), ['-b', ep, '-c', '4', '-i', '0.2', '--echo', 'echo']);
  const client = new Client({ brokers: [ep], timeout: ms(5000), retries: 2 });
  t.after(async () => { await client.close(); await stop(worker); await stop(broker); });
  const r = await client.request('echo', ['a', Buffer.alloc(5000, 3)]);
  assert.equal(String(r[0]), 'a');
  assert.ok(r[1].equals(Buffer.alloc(5000, 3)));
  const many = await Promise.all(Array.from({ length: 500 }, (_, i) => client.request('echo', String(i))));
  assert.deepEqual(many.map((x) => Number(x[0])), Array.from({ length: 500 }, (_, i) => i));
  // MMI through the C broker
  assert.equal(String((await client.request('mmi.service', 'echo'))[0]), '200');
});

test('mdp-request against a broker and a worker hosted in Node', { skip }, async (t) => {
  const broker = new Broker({ bind: 'tcp://127.0.0.1:*' });
  const worker = new Worker({ broker: broker.endpoint, service: 'upper', concurrency: 4 }, async (frames, reply) => {
    reply.partial('working');
    return frames.map((f) => f.toString().toUpperCase());
  });
  t.after(async () => { await worker.close(); await broker.close(); });
  const p = start(tool('mdp-request'), ['-b', broker.endpoint, '-t', String(ms(5)), 'upper', 'abc', 'de']);
  const r = await p.exited;
  assert.equal(r.code, 0, p.err);
  assert.match(p.out, /working/);
  assert.match(p.out, /ABC/);
  assert.match(p.out, /DE/);
  assert.ok(p.out.indexOf('working') < p.out.indexOf('ABC'), p.out);
  // Load mode: 2000 requests, 50 in flight, all answered.
  const load = start(tool('mdp-request'), ['-b', broker.endpoint, '-t', String(ms(10)), '-n', '2000', '-c', '50', 'upper', 'x']);
  const lr = await load.exited;
  assert.equal(lr.code, 0, load.err + load.out);
  assert.match(load.out, /2000 requests: 2000 ok, 0 failed/);
  assert.ok(broker.stats().replies >= 2001);
});

test('a Node worker behind mdp-broker, asked by mdp-request', { skip }, async (t) => {
  const ep = tmpIpc('broker');
  const broker = await cBroker(ep);
  const worker = new Worker({ broker: ep, service: 'node', heartbeatIntervalMs: 200 }, (f) => ['node', ...f]);
  t.after(async () => { await worker.close(); await stop(broker); });
  await new Promise((r) => worker.once('registered', r));
  const p = start(tool('mdp-request'), ['-b', ep, '-t', String(ms(5)), 'node', 'hello']);
  assert.equal((await p.exited).code, 0, p.err);
  assert.match(p.out, /node/);
  assert.match(p.out, /hello/);
});

test('mdp-broker killed and restarted: the worker re-registers, the client retries', { skip }, async (t) => {
  const ep = tmpIpc('broker');
  let broker = await cBroker(ep);
  const events = [];
  const worker = new Worker({ broker: ep, service: 'svc', heartbeatIntervalMs: 200, heartbeatLiveness: 3,
    reconnectInitialMs: 50, reconnectMaxMs: 200 }, (f) => ['ok', ...f]);
  worker.on('registered', () => events.push('registered'));
  worker.on('disconnected', (e) => events.push(`disconnected:${e.code}`));
  const client = new Client({ brokers: [ep], timeout: 700, retries: 20 });
  t.after(async () => { await client.close(); await worker.close(); await stop(broker); });
  await waitFor(() => events.includes('registered'), 10000, 'the worker to register');
  assert.deepEqual((await client.request('svc', 'one')).map(String), ['ok', 'one']);

  await stop(broker, 'SIGKILL');
  // Sent while no broker is there: timed out and retried until one is.
  const during = client.request('svc', 'two');
  await waitFor(() => events.some((e) => e.startsWith('disconnected')), 10000, 'the worker to notice');
  assert.ok(events.includes('disconnected:ETIMEDOUT'), events.join());
  broker = await cBroker(ep);
  // (Answered by a retry, or by the first send if ZeroMQ kept it queued
  // until the new broker's connection came up.)
  assert.deepEqual((await during).map(String), ['ok', 'two']);
  await waitFor(() => events.filter((e) => e === 'registered').length >= 2, 10000, 'the worker to re-register');
  assert.deepEqual((await client.request('svc', 'three')).map(String), ['ok', 'three']);
});

test('a broker hosted in Node closed and bound again: workers and clients carry on', { skip: false }, async (t) => {
  const first = new Broker({ bind: 'tcp://127.0.0.1:*', heartbeatIntervalMs: 200 });
  const ep = first.endpoint;
  const worker = new Worker({ broker: ep, service: 'svc', heartbeatIntervalMs: 200, heartbeatLiveness: 3,
    reconnectInitialMs: 50, reconnectMaxMs: 200 }, (f) => f);
  const client = new Client({ brokers: [ep], timeout: 500, retries: 20 });
  let second = null;
  t.after(async () => { await client.close(); await worker.close(); if (second) await second.close(); });
  assert.deepEqual((await client.request('svc', 'a')).map(String), ['a']);
  await first.close();
  const during = client.request('svc', 'b');
  // libzmq releases a closed socket's port from its I/O thread, a moment
  // after the close: bind again until the port is free.
  await waitFor(() => {
    try {
      second = new Broker({ bind: ep, heartbeatIntervalMs: 200 });
      return true;
    } catch (e) {
      if (e.code !== 'EADDRINUSE') throw e;
      return false;
    }
  }, 5000, 'the port to be free again');
  assert.deepEqual((await during).map(String), ['b']);
});
