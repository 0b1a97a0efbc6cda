// @ts-check
// A small typed Node.js client of the hwbkpt broker (issue 15): the calls, a session with
// the resume loop, and decoding of error details. Plain JavaScript with JSDoc types: no
// build step; editors and `tsc --checkJs` read the types.
//
// Numbers: uint64 fields (breakpoint ids, addresses, seq) are decimal strings, as
// proto-loader gives them with `longs: String`, so nothing above 2^53 is rounded.
'use strict';

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

/** The protos: the repository's proto/ (a published package ships them beside this file). */
const PROTO_DIR = process.env.HWBKPT_PROTO_DIR || path.resolve(__dirname, '..', '..', 'proto');

const LOADER_OPTIONS = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR],
};

/** Codes after which a broken event stream is resumed (the broker or the link is away). */
const RETRYABLE = new Set([grpc.status.UNAVAILABLE, grpc.status.INTERNAL, grpc.status.UNKNOWN,
  grpc.status.DEADLINE_EXCEEDED, grpc.status.RESOURCE_EXHAUSTED]);

// google.rpc.Status and the details the broker sends, described here so that no extra
// .proto is needed to decode `grpc-status-details-bin`.
const rpcTypes = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: 'int32', id: 1 },
                message: { type: 'string', id: 2 },
                details: { rule: 'repeated', type: 'google.protobuf.Any', id: 3 },
              },
            },
            BadRequest: {
              fields: { field_violations: { rule: 'repeated', type: 'FieldViolation', id: 1 } },
              nested: {
                FieldViolation: {
                  fields: { field: { type: 'string', id: 1 }, description: { type: 'string', id: 2 } },
                },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: 'string', id: 1 },
                domain: { type: 'string', id: 2 },
                metadata: { keyType: 'string', type: 'string', id: 3 },
              },
            },
          },
        },
      },
    },
  },
});
const StatusType = rpcTypes.lookupType('google.rpc.Status');
const BadRequestType = rpcTypes.lookupType('google.rpc.BadRequest');
const ErrorInfoType = rpcTypes.lookupType('google.rpc.ErrorInfo');

/**
 * @typedef {{field: string, description: string}} FieldViolation
 * @typedef {{code: number, codeName: string, message: string,
 *   violations: FieldViolation[], reason: string}} DecodedError
 */

/**
 * The status code, message, faulty fields (google.rpc.BadRequest) and stable reason
 * (google.rpc.ErrorInfo) of a failed call.
 * @param {any} err a grpc-js ServiceError
 * @returns {DecodedError}
 */
function decodeError(err) {
  /** @type {DecodedError} */
  const out = {
    code: err.code ?? grpc.status.UNKNOWN,
    codeName: grpc.status[err.code ?? grpc.status.UNKNOWN] || 'UNKNOWN',
    message: err.details ?? String(err.message ?? err),
    violations: [],
    reason: '',
  };
  const raw = err.metadata ? err.metadata.get('grpc-status-details-bin') : [];
  if (!raw || raw.length === 0) return out;
  const status = /** @type {any} */ (StatusType.decode(/** @type {Buffer} */ (raw[0])));
  for (const any of status.details || []) {
    const type = String(any.type_url).split('/').pop();
    if (type === 'google.rpc.BadRequest') {
      const bad = /** @type {any} */ (BadRequestType.decode(any.value));
      for (const v of bad.field_violations || []) {
        out.violations.push({ field: v.field, description: v.description });
      }
    } else if (type === 'google.rpc.ErrorInfo') {
      out.reason = /** @type {any} */ (ErrorInfoType.decode(any.value)).reason;
    }
  }
  return out;
}

class HwbkptError extends Error {
  /** @param {DecodedError} decoded */
  constructor(decoded) {
    super(`${decoded.codeName}: ${decoded.message}`);
    this.code = decoded.codeName;
    this.violations = decoded.violations;
    this.reason = decoded.reason;
  }
}

/**
 * @typedef {{
 *   scope?: 'SCOPE_KERNEL'|'SCOPE_PROCESS'|'SCOPE_THREAD', pid?: number, tid?: number,
 *   address?: string, length?: number,
 *   access?: 'ACCESS_EXEC'|'ACCESS_WRITE'|'ACCESS_READ'|'ACCESS_READ_WRITE',
 *   priority?: number, action?: 'ACTION_NOTIFY'|'ACTION_HALT',
 *   filter?: {changedOnly?: boolean, equals?: Buffer, ignoreFirst?: number, stopAfter?: number},
 *   symbol?: string, nonstop?: boolean
 * }} BreakpointSpec
 * @typedef {{id: string, state: string, pendingReason: string, priority: number,
 *   installedTids: number[], pendingTids: number[]}} Breakpoint
 * @typedef {{seq: string, breakpointId: string, kind: string, [kind: string]: any}} BrokerEvent
 */

/** @param {string} [token] @returns {grpc.Metadata} */
function sessionMetadata(token) {
  const metadata = new grpc.Metadata();
  if (token) metadata.set('hwbkpt-session-token', token);
  return metadata;
}

/** The package definition of the protos, loaded once. */
const DEFINITION = protoLoader.loadSync(['hwbkpt/v1/broker.proto', 'hwbkpt/v1/sim.proto'], LOADER_OPTIONS);

/**
 * Priority presets, from the proto's PriorityPreset enum (PRIORITY_PRESET_HIGH = 75 is
 * `high`); any integer 0..100 works too.
 * @type {Readonly<Record<string, number>>}
 */
const PRIORITY = Object.freeze(Object.fromEntries(
  /** @type {any} */ (DEFINITION['hwbkpt.v1.PriorityPreset']).type.value
    .filter((/** @type {any} */ v) => v.number !== 0)
    .map((/** @type {any} */ v) => [v.name.replace('PRIORITY_PRESET_', '').toLowerCase(), v.number])));

/** @param {number} ms @returns {{seconds: string, nanos: number}} a google.protobuf.Duration */
function durationFromMs(ms) {
  const whole = Math.floor(ms / 1000);
  return { seconds: String(whole), nanos: Math.round((ms - whole * 1000) * 1e6) };
}

/** @param {{seconds?: string|number, nanos?: number}|null|undefined} d @returns {number} ms */
function durationToMs(d) {
  return d ? Number(d.seconds || 0) * 1000 + (d.nanos || 0) / 1e6 : 0;
}

class Client {
  /**
   * @param {string} address `unix:/run/hwbkpt/hwbkpt.sock` or `host:port`
   * @param {{deadlineMs?: number}} [options]
   */
  constructor(address = process.env.HWBKPT_SERVER || 'unix:/run/hwbkpt/hwbkpt.sock', options = {}) {
    const pkg = /** @type {any} */ (grpc.loadPackageDefinition(DEFINITION)).hwbkpt.v1;
    // A `tcp:` prefix is this project's; grpc-js takes `host:port` and `unix:PATH`.
    const target = address.startsWith('tcp:') ? address.slice(4) : address;
    const creds = grpc.credentials.createInsecure();
    /** @type {any} */
    this.broker = new pkg.BrokerService(target, creds);
    /** @type {any} */
    this.sim = new pkg.SimService(target, creds);
    this.deadlineMs = options.deadlineMs ?? 10000;
  }

  /**
   * One unary call; rejects with HwbkptError. A session's calls carry its token as call
   * metadata (hwbkpt-session-token) and in the request's token field, for brokers from
   * before the token moved to metadata (an unknown field is dropped by the encoder).
   * @param {any} stub @param {string} method @param {object} request
   * @param {string} [token] the session's secret
   * @returns {Promise<any>}
   */
  call(stub, method, request, token) {
    const deadline = new Date(Date.now() + this.deadlineMs);
    const metadata = sessionMetadata(token);
    const body = token ? { ...request, token } : request;
    return new Promise((resolve, reject) => {
      stub[method](body, metadata, { deadline }, (/** @type {any} */ err, /** @type {any} */ res) =>
        err ? reject(new HwbkptError(decodeError(err))) : resolve(res));
    });
  }

  /** @returns {Promise<any>} the machine, its pools and mechanisms */
  describe() {
    return this.call(this.broker, 'describeMachine', {});
  }

  /** @param {number} [pid] */
  slotMap(pid = 0) {
    return this.call(this.broker, 'getSlotMap', { pid });
  }

  /**
   * @param {string} name shown to other sessions
   * @param {number} [leaseMs] how long the session outlives a dropped stream, in
   *   milliseconds (sent as a google.protobuf.Duration); 0: the broker's default
   * @returns {Promise<Session>}
   */
  async openSession(name, leaseMs = 0) {
    const res = await this.call(this.broker, 'openSession', { name, lease: durationFromMs(leaseMs) });
    return new Session(this, res.sessionId, res.token, durationToMs(res.lease));
  }

  close() {
    this.broker.close();
    this.sim.close();
  }
}

class Session {
  /** @param {Client} client @param {string} id @param {string} token @param {number} leaseMs */
  constructor(client, id, token, leaseMs) {
    this.client = client;
    this.id = id;
    this.token = token;
    /** The lease in force, in milliseconds. */
    this.leaseMs = leaseMs;
    /** The last event number received (a decimal string). */
    this.lastSeq = '0';
    this.reconnects = 0;
    /** @type {any} */
    this._stream = null;
    this._closed = false;
  }

  /** @param {BreakpointSpec} spec @returns {Promise<Breakpoint>} */
  async setBreakpoint(spec) {
    const res = await this.client.call(this.client.broker, 'setBreakpoint', { spec }, this.token);
    return res.breakpoint;
  }

  /** @param {string} breakpointId */
  remove(breakpointId) {
    return this.client.call(this.client.broker, 'removeBreakpoint', { breakpointId }, this.token);
  }

  /** @param {number[]} [tids] empty: every thread this session halted */
  resumeThreads(tids = []) {
    return this.client.call(this.client.broker, 'resumeThreads', { tids }, this.token);
  }

  /**
   * The session's events, in order, without gaps: one stream per session; when it breaks
   * the session is resumed (ResumeSession, then StreamEvents after the last seq seen)
   * until the lease runs out. Ends when the session is closed.
   * @returns {AsyncGenerator<BrokerEvent>}
   */
  async *events() {
    const giveUpAt = () => Date.now() + Math.max(1000, this.leaseMs);
    let deadline = giveUpAt();
    let delay = 50;
    while (!this._closed) {
      try {
        for await (const batch of this._openStream()) {
          deadline = giveUpAt();
          delay = 50;
          for (const ev of batch.events) {
            this.lastSeq = ev.seq;
            yield { ...ev, kind: ev.kind };
          }
        }
        return; // the broker ended the stream: the session is over
      } catch (err) {
        const e = /** @type {any} */ (err);
        if (this._closed || e.code === grpc.status.CANCELLED) return;
        if (!RETRYABLE.has(e.code) || Date.now() > deadline) {
          throw new HwbkptError(decodeError(e));
        }
      }
      // The resume loop: wait a little, then take the session back within its lease.
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 1000);
      try {
        await this.client.call(this.client.broker, 'resumeSession', {}, this.token);
        this.reconnects += 1;
      } catch (err) {
        const e = /** @type {any} */ (err);
        if (e.code === 'NOT_FOUND' || e.code === 'UNAUTHENTICATED') throw e; // lease over
      }
    }
  }

  _openStream() {
    this._stream = this.client.broker.streamEvents(
      { token: this.token, afterSeq: this.lastSeq }, sessionMetadata(this.token));
    return this._stream;
  }

  async close() {
    this._closed = true;
    try {
      await this.client.call(this.client.broker, 'closeSession', {}, this.token);
    } finally {
      if (this._stream) this._stream.cancel();
    }
  }
}

/** @param {Buffer|Uint8Array} bytes @returns {bigint} little-endian unsigned */
function leUint(bytes) {
  let out = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) out = (out << 8n) | BigInt(bytes[i]);
  return out;
}

module.exports = {
  Client, Session, HwbkptError, PRIORITY, decodeError, leUint, durationFromMs, durationToMs, PROTO_DIR,
};
