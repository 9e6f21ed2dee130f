// A broker, a worker and a client in one Node process (docs/node.md).
// Run: node examples/demo.js
'use strict';
const { Broker, Worker, Client } = require('..');

async function main() {
  // A broker on a free port of 127.0.0.1 ('*' is resolved in broker.endpoint).
  const broker = new Broker({ bind: 'tcp://127.0.0.1:*' });

  // A worker for 'upper': up to 4 requests in progress at once.  It sends
  // one PARTIAL per frame, then returns the FINAL.
  const worker = new Worker({ broker: broker.endpoint, service: 'upper', concurrency: 4 },
    async (frames, reply) => {
      for (const f of frames) reply.partial(`got ${f.length} bytes`);
      return frames.map((f) => f.toString().toUpperCase());
    });

  const client = new Client({ brokers: [broker.endpoint], timeout: 5000 });

  // One request: resolves to the FINAL's frames (Buffers).
  const reply = await client.request('upper', ['hello', 'node']);
  console.log('reply:', reply.map(String).join(' '));

  // A stream: every PARTIAL, then the FINAL.
  for await (const part of client.stream('upper', ['a', 'bc'])) {
    console.log('part:', part.map(String).join(' '));
  }

  // Many in flight at once on one client.
  const all = await Promise.all(Array.from({ length: 1000 }, (_, i) => client.request('upper', `r${i}`)));
  console.log('answered:', all.length);

  // Errors carry a code: here no one serves 'nobody'.
  try {
    await client.request('nobody', 'x', { timeout: 200, retries: 0 });
  } catch (err) {
    console.log('error:', err.code);
  }

  // Closing everything lets the process exit by itself.
  await client.close();
  await worker.close();
  await broker.close();
}

main().catch((err) => { console.error(err); process.exitCode = 1; });
