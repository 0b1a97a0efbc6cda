// @ts-check
// The displacement story against a live broker on its simulated machine (issue 15):
// four normal watches fill a thread's four slots, a high-priority fifth displaces one,
// leaves, the displaced watch is restored, and a write is a hit with value and old value.
// Prints one JSON line per step.   usage: HWBKPT_SERVER=unix:/path node examples/watch.js
'use strict';

const { Client, PRIORITY, leUint } = require('..');

const BASE = 0x1000n;

/** @param {string} step @param {object} [extra] */
function say(step, extra = {}) {
  process.stdout.write(JSON.stringify({ step, ...extra }) + '\n');
}

/** @param {AsyncGenerator<any>} events @param {(e: any) => boolean} check */
async function until(events, check) {
  for (;;) {
    const { value, done } = await events.next();
    if (done) throw new Error('the event stream ended');
    if (check(value)) return value;
  }
}

async function main() {
  const client = new Client();
  const machine = await client.describe();
  say('machine', { machine: machine.machine, layout: machine.layout, arch: machine.arch });
  const { pid, tids } = await client.call(client.sim, 'spawnProcess', { threads: 1 });
  const tool = await client.openSession('node-watch');
  const rival = await client.openSession('node-rival');
  const events = tool.events();
  try {
    const watches = [];
    for (let i = 0n; i < 4n; i++) {
      watches.push(await tool.setBreakpoint({
        scope: 'SCOPE_PROCESS', pid, address: String(BASE + 8n * i), length: 8,
        access: 'ACCESS_WRITE', priority: PRIORITY.normal, action: 'ACTION_NOTIFY',
      }));
    }
    say('four', { states: watches.map((w) => w.state) });
    const fifth = await rival.setBreakpoint({
      scope: 'SCOPE_PROCESS', pid, address: String(BASE + 0x100n), length: 8,
      access: 'ACCESS_WRITE', priority: PRIORITY.high, action: 'ACTION_NOTIFY',
    });
    const displaced = await until(events, (e) => e.kind === 'displaced');
    say('displaced', {
      breakpoint: displaced.breakpointId, bySession: displaced.displaced.bySession,
      byPriority: displaced.displaced.byPriority, fifth: fifth.state,
    });
    await rival.remove(fifth.id);
    const restored = await until(events, (e) => e.kind === 'restored');
    say('restored', { breakpoint: restored.breakpointId });
    // A write of 42 to the restored watch's variable: a hit with the value and the one before.
    const index = watches.findIndex((w) => w.id === restored.breakpointId);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(42n);
    await client.call(client.sim, 'touch', {
      pid, tid: tids[0], address: String(BASE + 8n * BigInt(index)),
      access: 'ACCESS_WRITE', value, size: 8,
    });
    const hit = await until(events, (e) => e.kind === 'hit');
    say('hit', {
      breakpoint: hit.breakpointId, address: hit.hit.address,
      value: String(leUint(hit.hit.value)), oldValue: String(leUint(hit.hit.oldValue)),
    });
  } finally {
    await rival.close();
    await tool.close();
    await events.return(undefined);
    client.close();
  }
}

main().catch((err) => {
  say('failed', { error: String(err && err.stack ? err.stack : err) });
  process.exitCode = 1;
});
