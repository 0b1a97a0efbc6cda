// Issue 15, items 1-2: the official DAP test client (@vscode/debugadapter-testsupport)
// drives `hwbkpt dap` against real C processes (tests/c/counter.c). Run by
// tests/e2e_native/test_e2e_native_dap.py, which starts the broker and the attach target
// and plays the rival client; the two talk over this script's stdin/stdout, one JSON
// object per line ({"step": ...}).
//
// Environment: HWBKPT (the `hwbkpt` command), HWBKPT_SERVER, STORY (attach|launch),
// PID and ADDRESS (attach), PROGRAM (launch), BUMP_START/BUMP_END (bump()'s addresses),
// NAME (the variable set by name) and BUMP_LINE (the line of counter.c that writes it).
'use strict';

const assert = require('node:assert/strict');
const readline = require('node:readline');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const env = process.env;
const TIMEOUT = 15000;
const lines = readline.createInterface({ input: process.stdin });
const waiting = [];
const received = [];
lines.on('line', (line) => {
  const next = waiting.shift();
  if (next) next(line.trim());
  else received.push(line.trim());
});

function say(step, extra = {}) {
  process.stdout.write(JSON.stringify({ step, ...extra }) + '\n');
}

function heard() {
  if (received.length) return Promise.resolve(received.shift());
  return new Promise((resolve) => waiting.push(resolve));
}

async function within(promise, what, ms = TIMEOUT) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// The next event `name` for which `check` holds (earlier ones are passed over).
function nextEvent(dc, name, check = () => true) {
  return new Promise((resolve) => {
    const listener = (event) => {
      if (check(event)) {
        dc.removeListener(name, listener);
        resolve(event);
      }
    };
    dc.on(name, listener);
  });
}

function inBump(ip) {
  const at = BigInt(ip);
  return at >= BigInt(env.BUMP_START) && at < BigInt(env.BUMP_END);
}

async function expectStop(dc, stopped, bpId, value, old) {
  const ev = await within(stopped, 'the stopped event');
  assert.equal(ev.body.reason, 'data breakpoint');
  assert.deepEqual(ev.body.hitBreakpointIds, [bpId]);
  const tid = ev.body.threadId;
  const threads = await dc.threadsRequest();
  assert.ok(threads.body.threads.some((t) => t.id === tid), `thread ${tid} listed`);
  const trace = await dc.stackTraceRequest({ threadId: tid });
  const top = trace.body.stackFrames[0];
  // The stop is in bump(), the function that writes the counter: by its name when the
  // broker symbolizes, always by its instruction pointer.
  assert.ok(inBump(top.instructionPointerReference), `top frame ${JSON.stringify(top)} in bump()`);
  if (env.BUMP_LINE) {
    // Symbolized by the broker: the function's name and the writing line of its source.
    assert.equal(top.name.split('+')[0], 'bump', JSON.stringify(top));
    assert.equal(top.source && top.source.name, 'counter.c', JSON.stringify(top));
    assert.equal(top.line, Number(env.BUMP_LINE), JSON.stringify(top));
  }
  const scopes = await dc.scopesRequest({ frameId: top.id });
  const vars = await dc.variablesRequest({
    variablesReference: scopes.body.scopes[0].variablesReference,
  });
  const byName = Object.fromEntries(vars.body.variables.map((v) => [v.name, v.value]));
  assert.match(byName.value, new RegExp(`^${value} `));
  assert.match(byName['old value'], new RegExp(`^${old} `));
  return { tid, top };
}

async function attachStory(dc) {
  await dc.initializeRequest({ adapterID: 'hwbkpt', linesStartAt1: true, columnsStartAt1: true });
  await dc.attachRequest({ pid: Number(env.PID), name: 'editor' });
  // A name the broker cannot find: no dataId, and the description says why.
  const unknown = await dc.dataBreakpointInfoRequest({ name: 'no_such_variable' });
  assert.equal(unknown.body.dataId, null, JSON.stringify(unknown.body));
  assert.match(unknown.body.description, /no_such_variable/);
  say('unknown', { description: unknown.body.description });
  // The address variant still answers.
  const byAddress = await dc.dataBreakpointInfoRequest({
    name: env.ADDRESS, bytes: 8, asAddress: true,
  });
  assert.equal(byAddress.body.dataId, `addr:${env.ADDRESS}:8`);
  // By name: resolved through the broker, the dataId carries the name and the
  // description shows where it is and how big.
  const info = await dc.dataBreakpointInfoRequest({ name: env.NAME });
  assert.ok(info.body.dataId, `dataId for ${env.NAME}: ${JSON.stringify(info.body)}`);
  assert.ok(info.body.dataId.includes(env.NAME), info.body.dataId);
  assert.deepEqual(info.body.accessTypes, ['read', 'write', 'readWrite']);
  say('info', { dataId: info.body.dataId, description: info.body.description });
  const set = await dc.setDataBreakpointsRequest({
    breakpoints: [{ dataId: info.body.dataId, accessType: 'write' }],
  });
  const bp = set.body.breakpoints[0];
  assert.equal(bp.verified, true, JSON.stringify(bp));
  await dc.configurationDoneRequest();

  // The test's target bumps the counter: a stop at the right place, value 1 (was 0).
  let stopped = nextEvent(dc, 'stopped');
  say('set', { id: bp.id });
  assert.equal(await heard(), 'bumped');
  const { top } = await expectStop(dc, stopped, bp.id, 1, 0);
  say('stopped', { frame: top });
  await dc.continueRequest({ threadId: 0 });
  assert.equal(await heard(), 'resumed');

  // A rival session fills the thread's slots at a higher priority: the breakpoint turns
  // unverified, naming who took the slot and at what priority...
  const displaced = nextEvent(dc, 'breakpoint', (e) => e.body.breakpoint.verified === false);
  say('ready-for-rival');
  assert.equal(await heard(), 'rival-set');
  const lost = await within(displaced, 'the unverified breakpoint');
  assert.equal(lost.body.reason, 'changed');
  assert.equal(lost.body.breakpoint.id, bp.id);
  say('displaced', { message: lost.body.breakpoint.message });
  // ... and verified again once the rival leaves.
  const back = nextEvent(dc, 'breakpoint', (e) => e.body.breakpoint.verified === true);
  assert.equal(await heard(), 'rival-gone');
  const restored = await within(back, 'the verified breakpoint');
  assert.equal(restored.body.breakpoint.id, bp.id);
  say('restored', { message: restored.body.breakpoint.message || '' });

  // Armed again: the next bump stops (value 2, was 1).
  stopped = nextEvent(dc, 'stopped');
  say('ready-for-bump');
  assert.equal(await heard(), 'bumped');
  await expectStop(dc, stopped, bp.id, 2, 1);
  await dc.continueRequest({ threadId: 0 });
  await dc.disconnectRequest({});
}

async function launchStory(dc) {
  // Listening before the request: the event follows its response, often in the same read.
  const initialized = dc.waitForEvent('initialized', TIMEOUT);
  await dc.initializeRequest({ adapterID: 'hwbkpt' });
  await dc.launchRequest({ program: env.PROGRAM, args: ['2'], name: 'editor-launch' });
  await initialized;
  // Held at its first instruction: the breakpoint is set before the program runs, so the
  // very first write stops (value 1, was 0).
  const info = await dc.dataBreakpointInfoRequest({ name: env.ADDRESS, bytes: 8, asAddress: true });
  const set = await dc.setDataBreakpointsRequest({
    breakpoints: [{ dataId: info.body.dataId, accessType: 'write' }],
  });
  const bp = set.body.breakpoints[0];
  assert.equal(bp.verified, true, JSON.stringify(bp));
  let stopped = nextEvent(dc, 'stopped');
  await dc.configurationDoneRequest();
  await expectStop(dc, stopped, bp.id, 1, 0);
  stopped = nextEvent(dc, 'stopped');
  await dc.continueRequest({ threadId: 0 });
  await expectStop(dc, stopped, bp.id, 2, 1);
  const exited = nextEvent(dc, 'exited');
  const terminated = nextEvent(dc, 'terminated');
  await dc.continueRequest({ threadId: 0 });
  const code = await within(exited, 'the exited event');
  assert.equal(code.body.exitCode, 0);
  await within(terminated, 'the terminated event');
  say('exited', { exitCode: code.body.exitCode });
  await dc.disconnectRequest({});
}

async function notifyStory(dc) {
  // Watches that never stop: each reported hit is an output event with the value and the
  // value before; hitCondition "> 1" is the broker's ignore_first 1.
  await dc.initializeRequest({ adapterID: 'hwbkpt' });
  await dc.attachRequest({ pid: Number(env.PID), name: 'editor-notify', action: 'notify' });
  const info = await dc.dataBreakpointInfoRequest({ name: env.ADDRESS, bytes: 8, asAddress: true });
  const set = await dc.setDataBreakpointsRequest({
    breakpoints: [{ dataId: info.body.dataId, accessType: 'write', hitCondition: '> 1' }],
  });
  assert.equal(set.body.breakpoints[0].verified, true, JSON.stringify(set.body));
  await dc.configurationDoneRequest();
  const outputs = [];
  const two = new Promise((resolve) => {
    dc.on('output', (e) => {
      if (e.body.output.startsWith('data breakpoint')) outputs.push(e.body.output.trim());
      if (outputs.length === 2) resolve();
    });
  });
  dc.on('stopped', (e) => outputs.push(`unexpected stop: ${JSON.stringify(e.body)}`));
  say('set', { id: set.body.breakpoints[0].id });
  assert.equal(await heard(), 'bumped-thrice');
  await within(two, 'two output events');
  say('outputs', { outputs });
  await dc.disconnectRequest({});
}

async function main() {
  const dc = new DebugClient(env.HWBKPT, 'dap', 'hwbkpt', { env }, true);
  dc.defaultTimeout = TIMEOUT;
  await dc.start();
  try {
    const stories = { attach: attachStory, launch: launchStory, notify: notifyStory };
    await stories[env.STORY](dc);
    say('done');
  } finally {
    dc.stopAdapter(); // stop() would send a second disconnect, to an adapter that ended
    lines.close();
    process.stdin.destroy(); // stdin would keep node running
  }
}

main().then(() => process.exit(0), (err) => {
  say('failed', { error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
