// @ts-check
// Issue 15: the Node client's resume loop against a live broker. Every connection between
// the client and the broker goes through a TCP relay in this process; mid-story the relay
// destroys them all (the link drops under the event stream). The client's events() resumes
// (ResumeSession within the lease, then StreamEvents after the last seq) and the story's
// hits arrive once each, in order: one JSON line per step on stdout.
'use strict';

const net = require('node:net');
const { Client, leUint } = require('../../clients/node');

const BASE = 0x7000n;
const N = 10;
const say = (/** @type {string} */ step, /** @type {object} */ rec) =>
  console.log(JSON.stringify({ step, ...rec }));

/** A relay from 127.0.0.1:<port> to the broker's unix socket; drop() cuts every link. */
function relay(/** @type {string} */ target) {
  /** @type {Set<net.Socket>} */
  const links = new Set();
  const server = net.createServer((down) => {
    const up = net.connect(target.replace(/^unix:/, ''));
    for (const s of [down, up]) {
      links.add(s);
      s.on('close', () => links.delete(s));
      s.on('error', () => {});
    }
    down.pipe(up).pipe(down);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: /** @type {net.AddressInfo} */ (server.address()).port,
    drop: () => { const n = links.size; for (const s of links) s.destroy(); return n; },
    close: () => server.close(),
  })));
}

/** A unary call, retried while the channel reconnects (the relay keeps listening). */
async function retried(/** @type {() => Promise<any>} */ call) {
  for (let i = 0; ; i++) {
    try { return await call(); } catch (err) {
      if (i > 50 || /** @type {any} */ (err).code !== 'UNAVAILABLE') throw err;
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

async function main() {
  const link = /** @type {any} */ (await relay(process.env.HWBKPT_SERVER || ''));
  const client = new Client(`127.0.0.1:${link.port}`);
  const { pid, tids } = await client.call(client.sim, 'spawnProcess', { threads: 1 });
  const session = await client.openSession('node-resume', 20000);
  const events = session.events();
  /** @type {{seq: string, value: string}[]} */
  const hits = [];
  const touch = (/** @type {number} */ v) => {
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(v));
    return retried(() => client.call(client.sim, 'touch', {
      pid, tid: tids[0], address: String(BASE), access: 'ACCESS_WRITE', value, size: 8,
    }));
  };
  const nextHit = async () => {
    for (;;) {
      const { value, done } = await events.next();
      if (done) throw new Error('the event stream ended');
      if (value.kind === 'hit') return value;
    }
  };
  try {
    const bp = await session.setBreakpoint({
      scope: 'SCOPE_PROCESS', pid, address: String(BASE), length: 8,
      access: 'ACCESS_WRITE', action: 'ACTION_NOTIFY',
    });
    for (let v = 1; v <= N; v++) {
      if (v === N / 2 + 1) {
        // Half the story is told: cut the link under the stream, then write on while it is down.
        say('dropped', { links: link.drop(), lastSeq: session.lastSeq });
      }
      await touch(v);
      if (v <= N / 2) {
        const hit = await nextHit();
        hits.push({ seq: hit.seq, value: String(leUint(hit.hit.value)) });
      }
    }
    while (hits.length < N) {
      const hit = await nextHit();
      hits.push({ seq: hit.seq, value: String(leUint(hit.hit.value)) });
    }
    say('story', { breakpoint: bp.id, hits, reconnects: session.reconnects });
  } finally {
    await retried(() => session.close());
    await events.return(undefined);
    client.close();
    link.close();
  }
}

main().catch((err) => {
  say('failed', { error: String(err && err.stack ? err.stack : err) });
  process.exitCode = 1;
});
