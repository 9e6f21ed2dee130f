'use strict';
// libmdp for Node.js: the Majordomo broker, worker and client of libmdp on
// Node's own event loop.  docs/node.md describes the API; index.d.ts types it.
//
// The native half (src/addon.c) queues every event libmdp reports and hands
// the queue to dispatch() below from the top of the loop, never from inside
// a libmdp call; so everything here may call the native functions freely.
const { EventEmitter } = require('events');
const path = require('path');

const native = require(path.join(__dirname, 'build', 'libmdp.node'));

const EV_REPLY = 1;
const EV_REQUEST = 2;
const EV_WEVENT = 3;
const EV_LOG = 4;
const EV_CLOSED = 5;
const EV_DRAIN = 6;

const LOG_LEVELS = ['error', 'warn', 'info', 'debug'];
const DIALECTS = { rfc18: 1, majortomo: 2, mdp01: 4 };
const SPREADS = { 'round-robin': 0, roundRobin: 0, fewest: 1, failover: 2 };

// Objects by id, per environment (each worker_threads thread loads its own
// copy of this module).  An open object stays here, so it is never garbage
// collected while libmdp may still report to it.
const objects = new Map();
let nextId = 1;

function mdpError(status, extra) {
  const [code, message] = native.strerror(status);
  const err = new Error(message);
  err.code = code;
  err.errno = status;
  if (extra) Object.assign(err, extra);
  return err;
}

function dispatch(kind, id, a, b, c, frames) {
  const obj = objects.get(id);
  if (obj === undefined) return;
  switch (kind) {
    case EV_REPLY: obj._onReply(a, b, c, frames); break;
    case EV_REQUEST: obj._onRequest(a, b, frames); break;
    case EV_WEVENT: obj._onEvent(b, c); break;
    case EV_LOG: obj.emit('log', { level: LOG_LEVELS[b] || String(b), message: c }); break;
    case EV_DRAIN: obj.emit('drain'); break;
    case EV_CLOSED: objects.delete(id); obj._onClosed(); break;
    default: break;
  }
}
native.setDispatch(dispatch);

// ---- options -------------------------------------------------------------

const snake = (k) => k.replace(/[A-Z]/g, (m) => '_' + m.toLowerCase());

// Options: camelCase of the C names (timeoutMs for timeout_ms); a few
// aliases in seconds-free short forms (timeout for timeoutMs).  Unknown
// options are an error, so a typo does not pass silently.
function cOptions(opts, known, aliases, skip) {
  const out = {};
  for (const [k, v] of Object.entries(opts || {})) {
    if (skip.includes(k) || v === undefined) continue;
    const name = aliases[k] || k;
    const c = snake(name);
    if (!known.includes(c)) throw new TypeError(`libmdp: unknown option '${k}'`);
    if (c === 'dialect') {
      if (!(v in DIALECTS)) throw new TypeError(`libmdp: dialect must be one of ${Object.keys(DIALECTS).join(', ')}`);
      out[c] = DIALECTS[v];
    } else if (c === 'dialects' || c === 'silent_busy_dialects') {
      const list = Array.isArray(v) ? v : [v];
      out[c] = list.reduce((m, d) => {
        if (!(d in DIALECTS)) throw new TypeError(`libmdp: unknown dialect '${d}'`);
        return m | DIALECTS[d];
      }, 0);
    } else if (c === 'spread') {
      if (!(v in SPREADS)) throw new TypeError("libmdp: spread must be 'round-robin', 'fewest' or 'failover'");
      out[c] = SPREADS[v];
    } else if (c === 'log_level') {
      const i = LOG_LEVELS.indexOf(v);
      if (i < 0) throw new TypeError(`libmdp: logLevel must be one of ${LOG_LEVELS.join(', ')}`);
      out[c] = i;
    } else if (c === 'probe' || c === 'disconnect_expired' || c === 'ipv6' || c === 'tcp_keepalive') {
      out[c] = typeof v === 'boolean' ? Number(v) : v;
    } else if (c === 'curve_allow_keys') {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
        throw new TypeError('libmdp: curveAllowKeys must be an array of Z85 public keys');
      }
      out[c] = v;
    } else if (c.startsWith('curve_')) {
      if (typeof v !== 'string') throw new TypeError(`libmdp: ${k} must be a string (Z85 key or path)`);
      out[c] = v;
    } else {
      if (typeof v !== 'number' || Number.isNaN(v)) throw new TypeError(`libmdp: ${k} must be a number`);
      out[c] = v;
    }
  }
  return out;
}

const SOCKET = ['sndhwm', 'rcvhwm', 'tcp_keepalive', 'tcp_keepalive_idle', 'tcp_keepalive_intvl',
  'tcp_keepalive_cnt', 'ipv6'];
const BROKER_OPTS = ['heartbeat_interval_ms', 'heartbeat_liveness', 'silent_busy_dialects',
  'silent_busy_timeout_ms', 'busy_timeout_ms', 'request_expiry_ms', 'max_queue', 'max_queued_total',
  'max_queue_per_client', 'max_queued_bytes', 'max_services', 'max_workers_per_service',
  'max_frames', 'max_msg_size', 'max_redispatch', 'dialects', 'curve_secret_key', 'curve_allow',
  'curve_allow_keys',
  'log_level', 'disconnect_expired', 'max_mmi_reply_bytes', 'metrics_max_services', ...SOCKET];
const CLIENT_OPTS = ['timeout_ms', 'deadline_ms', 'retries', 'max_sockets', 'max_queue', 'dialect',
  'curve_server_key', 'curve_public_key', 'curve_secret_key', 'log_level', 'max_msg_size',
  'max_queued_bytes', 'spread', 'probe', 'backoff_ms', 'backoff_max_ms', ...SOCKET];
const WORKER_OPTS = ['heartbeat_interval_ms', 'heartbeat_liveness', 'reconnect_initial_ms',
  'reconnect_max_ms', 'dialect', 'curve_server_key', 'curve_public_key', 'curve_secret_key',
  'log_level', 'max_msg_size', 'max_frames', 'concurrency', 'check_interval_ms', 'lost_after_ms',
  ...SOCKET];

// Frames: an array of Buffers/TypedArrays/strings, or one of them alone.
function toFrames(frames) {
  if (frames === undefined || frames === null) return [];
  if (Array.isArray(frames)) return frames;
  return [frames];
}

// ---- base ----------------------------------------------------------------

class Base extends EventEmitter {
  constructor() {
    super();
    this._id = nextId++;
    this._handle = null;
    this._closing = null;
    this._closeResolve = null;
  }

  _register(handle) {
    this._handle = handle;
    objects.set(this._id, this);
  }

  // Logs reach 'log' listeners only; the native side formats them only when
  // there is a listener (or the logLevel option was given) at creation.
  static _wantLog(opts) {
    return Boolean(opts && (opts.logLevel !== undefined || opts.log));
  }

  _startClose(wait) {
    if (this._closing) return this._closing;
    this._closing = new Promise((resolve) => { this._closeResolve = resolve; });
    if (this._handle !== null) native.close(this._handle, wait);
    else this._onClosed();
    return this._closing;
  }

  _onClosed() {
    this._closed = true;
    if (this._closeResolve) this._closeResolve();
    this.emit('close');
  }

  get closed() { return Boolean(this._closed); }
}

// ---- broker --------------------------------------------------------------

class Broker extends Base {
  constructor(opts = {}) {
    super();
    const bind = opts.bind === undefined ? [] : Array.isArray(opts.bind) ? opts.bind : [opts.bind];
    const c = cOptions(opts, BROKER_OPTS, {}, ['bind', 'log']);
    this._register(native.brokerNew(this._id, c, Base._wantLog(opts)));
    this.endpoints = [];
    try {
      for (const ep of bind) this.endpoints.push(native.brokerBind(this._handle, ep));
    } catch (e) {
      // Bind failed: nothing is left open (the process may exit).
      this._startClose(false);
      throw e;
    }
  }

  // Binds one more endpoint; returns the endpoint bound (a '*' port resolved).
  bind(endpoint) {
    const ep = native.brokerBind(this._handle, endpoint);
    this.endpoints.push(ep);
    return ep;
  }

  get endpoint() { return this.endpoints[this.endpoints.length - 1]; }

  stats() { return native.brokerStats(this._handle); }

  close() { return this._startClose(false); }
}

// ---- client --------------------------------------------------------------

class Client extends Base {
  constructor(opts = {}) {
    super();
    let brokers = opts.brokers !== undefined ? opts.brokers : opts.broker;
    if (brokers === undefined) brokers = ['tcp://127.0.0.1:5555'];
    if (!Array.isArray(brokers)) brokers = [brokers];
    const c = cOptions(opts, CLIENT_OPTS, { timeout: 'timeoutMs', deadline: 'deadlineMs' },
      ['brokers', 'broker', 'log']);
    this._pending = new Map(); // request id -> sink
    this._register(native.clientNew(this._id, brokers, c, Base._wantLog(opts)));
  }

  // Sends a request; `sink(status, final, frames)` gets each reply part.
  _send(service, frames, opts, sink) {
    opts = opts || {};
    const signal = opts.signal;
    if (signal && signal.aborted) {
      throw mdpError(-125, { name: 'AbortError', cause: signal.reason });
    }
    const num = (v) => (v === undefined ? -1 : v);
    const id = native.clientRequest(this._handle, String(service), toFrames(frames),
      num(opts.timeout !== undefined ? opts.timeout : opts.timeoutMs),
      num(opts.deadline !== undefined ? opts.deadline : opts.deadlineMs), num(opts.retries));
    const entry = { sink, signal, onAbort: null, aborted: false };
    if (signal) {
      entry.onAbort = () => {
        entry.aborted = true;
        native.clientCancel(this._handle, id);
      };
      signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    this._pending.set(id, entry);
    return id;
  }

  _onReply(id, status, final, frames) {
    const entry = this._pending.get(id);
    if (entry === undefined) return;
    if (final) {
      this._pending.delete(id);
      if (entry.signal) entry.signal.removeEventListener('abort', entry.onAbort);
    }
    let err = null;
    if (status < 0) {
      err = mdpError(status);
      if (entry.aborted) {
        err.name = 'AbortError';
        err.cause = entry.signal.reason;
      }
    }
    entry.sink(err, final, frames);
  }

  // Resolves to the FINAL's frames; PARTIALs go to opts.onPartial if given.
  request(service, frames, opts = {}) {
    return new Promise((resolve, reject) => {
      this._send(service, frames, opts, (err, final, parts) => {
        if (err) reject(err);
        else if (final) resolve(parts);
        else if (opts.onPartial) opts.onPartial(parts);
      });
    });
  }

  // An async iterable of every reply part: each PARTIAL's frames, then the
  // FINAL's.  Leaving the loop early (break, throw) cancels the request.
  stream(service, frames, opts = {}) {
    const queue = [];
    let waiter = null;
    let done = false;
    let error = null;
    const id = this._send(service, frames, opts, (err, final, parts) => {
      if (err) error = err;
      else queue.push(parts);
      if (final) done = true;
      if (waiter) { const w = waiter; waiter = null; w(); }
    });
    const self = this;
    return {
      id,
      [Symbol.asyncIterator]() { return this; },
      async next() {
        for (;;) {
          if (queue.length > 0) return { value: queue.shift(), done: false };
          if (error) { const e = error; error = null; queue.length = 0; done = true; throw e; }
          if (done) return { value: undefined, done: true };
          await new Promise((r) => { waiter = r; });
        }
      },
      async return() {
        if (!done) {
          done = true;
          queue.length = 0;
          const entry = self._pending.get(id);
          if (entry !== undefined) {
            // Forget it now: its ECANCELED is for nobody.
            self._pending.delete(id);
            if (entry.signal) entry.signal.removeEventListener('abort', entry.onAbort);
            native.clientCancel(self._handle, id);
          }
        }
        return { value: undefined, done: true };
      },
    };
  }

  // Requests sent or queued and not yet over.
  get pending() { return this._pending.size; }

  stats() { return native.clientStats(this._handle); }

  // Let the process exit while this client is open (libuv's unref).
  unref() { if (!this._closed) native.ref(this._handle, false); return this; }

  ref() { if (!this._closed) native.ref(this._handle, true); return this; }

  // Pending requests fail with ECANCELED at once; resolves once closed.
  close() { return this._startClose(false); }
}

// ---- worker --------------------------------------------------------------

// The reply handle a worker's handler gets.
class Reply {
  constructor(worker, wptr, id) {
    this._worker = worker;
    this._wptr = wptr;
    this._id = id;
    this.done = false;
  }

  _send(final, frames) {
    const w = this._worker;
    if (this.done) {
      const e = mdpError(-5001);
      e.message = 'the FINAL was sent already';
      throw e;
    }
    // Once the worker is closed its request handles are gone: nothing to send.
    if (w._closed) {
      if (final) this.done = true;
      throw mdpError(-5000);
    }
    // A frame of the wrong type throws a TypeError here, before anything is
    // sent: the request is still open.
    const rc = native.workerReply(w._handle, this._wptr, this._id, final, toFrames(frames));
    if (final) this.done = true;
    if (rc < 0) throw mdpError(rc);
  }

  // Sends a PARTIAL (any number before the FINAL).
  partial(frames) { this._send(false, frames); }
}

class Worker extends Base {
  constructor(opts, handler) {
    super();
    if (typeof handler !== 'function') throw new TypeError('libmdp: Worker needs a handler function');
    if (!opts || typeof opts.service !== 'string') throw new TypeError('libmdp: Worker needs a service');
    let brokers = opts.broker !== undefined ? opts.broker : opts.brokers;
    if (brokers === undefined) brokers = ['tcp://127.0.0.1:5555'];
    if (!Array.isArray(brokers)) brokers = [brokers];
    const c = cOptions(opts, WORKER_OPTS, {}, ['broker', 'brokers', 'service', 'log', 'errorReply']);
    this.service = opts.service;
    this._handler = handler;
    this._errorReply = opts.errorReply ||
      ((err) => [`error: ${err && err.message !== undefined ? err.message : String(err)}`]);
    this._inProgress = 0;
    this._register(native.workerNew(this._id, brokers, opts.service, c, Base._wantLog(opts)));
  }

  _onRequest(id, wptr, frames) {
    const reply = new Reply(this, wptr, id);
    this._inProgress++;
    const finish = (final) => {
      this._inProgress--;
      if (reply.done || this._closed) return;
      try {
        try {
          reply._send(true, final);
        } catch (e) {
          if (reply.done) throw e;
          // The handler's answer could not be sent (not frames): say so.
          this._handlerError(e, frames);
          reply._send(true, this._errorAnswer(e));
        }
      } catch (e) {
        // ESTATE: the request was abandoned (its broker connection was lost;
        // the client's retry goes elsewhere); nothing to report.  Anything
        // else (a bad frame type, ENOBUFS) is the handler's to hear about.
        if (e.code !== 'ESTATE' && e.code !== 'ECLOSING') this._handlerError(e, frames);
      }
    };
    const failed = (err) => {
      this._handlerError(err, frames);
      finish(this._errorAnswer(err));
    };
    let result;
    try {
      result = this._handler(frames, reply);
    } catch (err) {
      failed(err);
      return;
    }
    if (result !== null && typeof result === 'object' && typeof result.then === 'function') {
      result.then(finish, failed);
    } else {
      finish(result);
    }
  }

  _errorAnswer(err) {
    try {
      return this._errorReply(err);
    } catch (e) {
      return ['error'];
    }
  }

  _handlerError(err, frames) {
    if (this.listenerCount('handlerError') > 0) this.emit('handlerError', err, frames);
    else console.error(`libmdp worker '${this.service}': handler failed:`, err);
  }

  _onEvent(event, err) {
    if (event === 1) this.emit('registered');
    else if (event === 2) this.emit('disconnected', mdpError(err));
  }

  // Requests being handled now.
  get inProgress() { return this._inProgress; }

  stats() { return native.workerStats(this._handle); }

  // Stops taking requests; those in progress get their FINAL first (while
  // their broker is there), then the worker disconnects.  Resolves once
  // closed.  { abandon: true }: requests in progress are abandoned instead
  // (their handlers' answers are dropped), for a handler that may never end.
  close(opts = {}) { return this._startClose(!(opts && opts.abandon)); }
}

function errorName(code) { return native.strerror(code)[0]; }

// A new CURVE key pair, { publicKey, secretKey }, as Z85 strings.
function curveKeypair() { return native.curveKeypair(); }

// Frames of 64 KiB or more are lent to libzmq, not copied: how many were
// lent, released by libzmq since, and are still held (diagnostics).
function lentFrames() { return native.lentFrames(); }

module.exports = { Broker, Worker, Client, errorName, curveKeypair, lentFrames };
