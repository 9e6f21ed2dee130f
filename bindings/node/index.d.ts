// Type declarations for libmdp's Node.js binding (docs/node.md).
/// <reference types="node" />
import { EventEmitter } from 'events';

/** One body frame: a Buffer (or any TypedArray) or a string (sent as UTF-8). */
export type Frame = Buffer | Uint8Array | ArrayBufferView | string;
/** A body: one frame, or an array of frames (an empty array sends one empty frame). */
export type Frames = Frame | Frame[];

export type Dialect = 'rfc18' | 'majortomo' | 'mdp01';
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/** An Error from libmdp: `code` names the cause ('ETIMEDOUT', 'ECANCELED', 'EINVAL', ...). */
export interface MdpError extends Error {
  code: string;
  /** libmdp's (negative) error number. */
  errno: number;
}

export interface LogEntry {
  level: LogLevel;
  message: string;
}

/** ZeroMQ socket options (mdp_socket_options_t), for the broker, workers and clients. */
export interface SocketOptions {
  sndhwm?: number;
  rcvhwm?: number;
  tcpKeepalive?: number | boolean;
  tcpKeepaliveIdle?: number;
  tcpKeepaliveIntvl?: number;
  tcpKeepaliveCnt?: number;
  ipv6?: number | boolean;
}

interface CommonOptions extends SocketOptions {
  /** Emit 'log' events from this level down (none without it). */
  logLevel?: LogLevel;
}

/** mdp_broker_options_t, camelCase. */
export interface BrokerOptions extends CommonOptions {
  /** Endpoints bound at once ('tcp://127.0.0.1:*' picks a free port). */
  bind?: string | string[];
  heartbeatIntervalMs?: number;
  heartbeatLiveness?: number;
  silentBusyDialects?: Dialect | Dialect[];
  silentBusyTimeoutMs?: number;
  busyTimeoutMs?: number;
  requestExpiryMs?: number;
  maxQueue?: number;
  maxQueuedTotal?: number;
  maxQueuePerClient?: number;
  maxQueuedBytes?: number;
  maxServices?: number;
  maxWorkersPerService?: number;
  maxFrames?: number;
  maxMsgSize?: number;
  maxRedispatch?: number;
  dialects?: Dialect | Dialect[];
  /** The broker's CURVE secret key (40 characters of Z85). */
  curveSecretKey?: string;
  /** A key file or a directory of *.pub files: the clients and workers let in. */
  curveAllow?: string;
  /** Z85 public keys of the clients and workers let in (with or instead of curveAllow). */
  curveAllowKeys?: string[];
  disconnectExpired?: number | boolean;
  maxMmiReplyBytes?: number;
  metricsMaxServices?: number;
}

export interface BrokerStats {
  requests: number; mmiRequests: number; dispatched: number; partials: number; replies: number;
  redispatched: number; droppedInvalid: number; droppedExpired: number; droppedQueueFull: number;
  droppedUnroutable: number; droppedWorkerLost: number; workersRegistered: number;
  workersExpired: number; heartbeatsSent: number; workers: number; workersIdle: number;
  services: number; queued: number;
}

export declare class Broker extends EventEmitter {
  /** Creates the broker and binds `opts.bind` at once; throws (code 'EINVAL', 'EADDRINUSE', ...) on a bad endpoint. */
  constructor(opts?: BrokerOptions);
  /** The endpoints bound, ports resolved. */
  readonly endpoints: string[];
  /** The last endpoint bound. */
  readonly endpoint: string;
  readonly closed: boolean;
  /** Binds one more endpoint; returns it with its port resolved. */
  bind(endpoint: string): string;
  stats(): BrokerStats;
  /** Disconnects the workers, drops queued requests; resolves once closed. */
  close(): Promise<void>;
  on(event: 'log', listener: (entry: LogEntry) => void): this;
  on(event: 'close', listener: () => void): this;
}

/** mdp_client_options_t, camelCase. */
export interface ClientOptions extends CommonOptions {
  /** Broker endpoints (default ['tcp://127.0.0.1:5555']). */
  brokers?: string | string[];
  /** Longest wait for the next reply part, ms (default 10000); also `timeoutMs`. */
  timeout?: number;
  timeoutMs?: number;
  /** Longest time for a whole request, ms (default none); also `deadlineMs`. */
  deadline?: number;
  deadlineMs?: number;
  /** Times a timed-out request is sent again (default 1). */
  retries?: number;
  /** Sockets open at once: requests at the brokers at once (default 64). */
  maxSockets?: number;
  maxQueue?: number;
  maxQueuedBytes?: number;
  dialect?: Dialect;
  curveServerKey?: string;
  curvePublicKey?: string;
  curveSecretKey?: string;
  maxMsgSize?: number;
  spread?: 'round-robin' | 'fewest' | 'failover';
  probe?: number | boolean;
  backoffMs?: number;
  backoffMaxMs?: number;
}

export interface RequestOptions {
  /** Cancels the request: it rejects with code 'ECANCELED', name 'AbortError'. */
  signal?: AbortSignal;
  timeout?: number;
  deadline?: number;
  retries?: number;
}

export interface ClientStats {
  requests: number; sent: number; retries: number; partials: number; finals: number;
  timeouts: number; cancelled: number; dropped: number; socketsOpened: number;
  inFlight: number; queued: number; sockets: number; endpointsLive: number;
}

export interface ReplyStream extends AsyncIterableIterator<Buffer[]> {
  /** The request's id (libmdp's). */
  readonly id: number;
}

export declare class Client extends EventEmitter {
  constructor(opts?: ClientOptions);
  /** Resolves to the FINAL's frames; PARTIALs go to `onPartial`. Rejects with an MdpError. */
  request(service: string, frames?: Frames,
          opts?: RequestOptions & { onPartial?: (frames: Buffer[]) => void }): Promise<Buffer[]>;
  /** Every PARTIAL's frames, then the FINAL's; leaving the loop early cancels the request. */
  stream(service: string, frames?: Frames, opts?: RequestOptions): ReplyStream;
  /** Requests not yet over. */
  readonly pending: number;
  readonly closed: boolean;
  stats(): ClientStats;
  /** Lets the process exit while this client is open (libuv's unref). */
  unref(): this;
  ref(): this;
  /** Pending requests reject with 'ECANCELED'; resolves once closed. */
  close(): Promise<void>;
  on(event: 'log', listener: (entry: LogEntry) => void): this;
  on(event: 'drain' | 'close', listener: () => void): this;
}

/** mdp_worker_options_t and mdp_worker_group_options_t, camelCase. */
export interface WorkerOptions extends CommonOptions {
  /** Broker endpoint(s) (default 'tcp://127.0.0.1:5555'). */
  broker?: string | string[];
  service: string;
  /** Requests in progress at once, all brokers together (default: one per broker). */
  concurrency?: number;
  heartbeatIntervalMs?: number;
  heartbeatLiveness?: number;
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  dialect?: Dialect;
  curveServerKey?: string;
  curvePublicKey?: string;
  curveSecretKey?: string;
  maxMsgSize?: number;
  maxFrames?: number;
  checkIntervalMs?: number;
  lostAfterMs?: number;
  /** The FINAL sent for a handler that throws or rejects (default: ['error: ' + message]). */
  errorReply?: (err: unknown) => Frames;
}

export interface Reply {
  /** Sends a PARTIAL; throws an MdpError ('ESTATE' after the FINAL, 'ENOTSUP' in MDP/0.1). */
  partial(frames: Frames): void;
  /** True once the FINAL was sent. */
  readonly done: boolean;
}

export type Handler = (frames: Buffer[], reply: Reply) =>
  Frames | undefined | void | Promise<Frames | undefined | void>;

export interface WorkerStats {
  requests: number; moves: number; brokersLost: number; brokersBack: number;
  slots: number; busy: number; maxBusy: number; brokersAlive: number;
}

export declare class Worker extends EventEmitter {
  constructor(opts: WorkerOptions, handler: Handler);
  readonly service: string;
  /** Requests being handled now. */
  readonly inProgress: number;
  readonly closed: boolean;
  stats(): WorkerStats;
  /** Stops taking requests, lets those in progress send their FINAL (unless `abandon`), then disconnects. */
  close(opts?: { abandon?: boolean }): Promise<void>;
  /** A connection's READY was accepted (once per connection: `concurrency` of them). */
  on(event: 'registered', listener: () => void): this;
  /** A connection was given up (err.code 'ETIMEDOUT': silent broker; 'ECANCELED': DISCONNECT); it reconnects. */
  on(event: 'disconnected', listener: (err: MdpError) => void): this;
  /** A handler threw or rejected (without a listener: console.error). */
  on(event: 'handlerError', listener: (err: unknown, frames: Buffer[]) => void): this;
  on(event: 'log', listener: (entry: LogEntry) => void): this;
  on(event: 'close', listener: () => void): this;
}

/** A new CURVE key pair, Z85 strings (throws 'ENOTSUP' if libzmq has no CURVE). */
export declare function curveKeypair(): { publicKey: string; secretKey: string };

/** Frames of 64 KiB or more lent to libzmq without a copy: since start, released since, held now. */
export declare function lentFrames(): { lent: number; released: number; outstanding: number };

/** The symbolic name of a libmdp error number ('ETIMEDOUT'). */
export declare function errorName(errno: number): string;
