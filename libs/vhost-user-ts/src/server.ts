// The listening side: one unix socket, one frontend at a time (vhost-user is point to point). When
// the frontend goes away every queue is stopped, every fd and mapping released, and the next
// connection is accepted, so a QEMU started with `reconnect=1` comes back to the same process.
//
// The frontend is untrusted, and so is whoever else can connect to the socket. Whatever one does
// costs at most its own connection:
//  - an exception while handling a message or in any callback (kick, fault, timer) is caught,
//    counted in `stats`, logged, and closes that connection; nothing reaches the event loop;
//  - a connection that sends no complete message within `firstMessageTimeoutMs` is dropped
//    (QEMU sends GET_FEATURES at once);
//  - the frontend attached stays attached while it works; a new connection replaces it only when
//    it has no running queue and has been silent for `idleTakeoverMs` (a stale or stuck peer must
//    not keep QEMU from reconnecting), and is refused otherwise. The newcomer takes over once it
//    sends its first request, not on connecting: a peer that only probes the socket (another
//    vunet checking whether the path is live) must not knock an idle QEMU off;
//  - a frontend that does not read its replies is dropped once `maxQueuedReplies` wait;
//  - every log line that can repeat goes through one RateLimitedLogger kept across connections.
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync } from 'node:fs';
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';
import { Backend, GuestMemoryFault, ProtocolError } from './backend.js';
import type { GuestMemoryNotShared } from './backend.js';
import { Connection } from './connection.js';
import type { VhostUserDevice } from './device.js';
import type { Logger } from './logger.js';
import { RateLimitedLogger, silentLogger } from './logger.js';
import type { KickSource } from './kicks.js';
import type { NativePoller } from './native.js';
import { native } from './native.js';

const { ECONNABORTED } = constants.errno;

export interface ServerOptions {
  logger?: Logger;
  /** Memory slots offered to the frontend (CONFIGURE_MEM_SLOTS); default 32. */
  maxMemSlots?: number;
  /** Offer VIRTIO_RING_F_EVENT_IDX; default true. */
  eventIdx?: boolean;
  /** Offer VIRTIO_RING_F_INDIRECT_DESC; default true. */
  indirectDesc?: boolean;
  /** A connection that sends no complete message within this many ms is dropped; default 5000. */
  firstMessageTimeoutMs?: number;
  /** A new connection replaces the attached frontend when that one has no running queue and has
   *  sent nothing for this many ms; otherwise the newcomer is refused. Default 2000. */
  idleTakeoverMs?: number;
  /** Replies the frontend has not read, past which it is dropped; default 64 (and 256 KiB). */
  maxQueuedReplies?: number;
  maxQueuedReplyBytes?: number;
  /** Least time between two log lines of one kind, in ms; default 10 000. */
  logIntervalMs?: number;
  /** Where kicks are heard (see kicks.ts); default a draining poller per kick fd. */
  kicks?: KickSource;
  /** Monotonic milliseconds for idle times and log rate limits; default performance.now. */
  clock?: () => number;
}

/** What the server has seen since it was made. */
export interface ServerStats {
  /** Frontend connections served. */
  connections: number;
  /** Connections refused because the attached frontend was busy or recently active. */
  refused: number;
  /** Attached frontends dropped, idle, in favour of a new connection. */
  idleReplaced: number;
  /** Connections dropped for sending nothing within firstMessageTimeoutMs. */
  silent: number;
  /** Exceptions caught while handling a message or in a callback; each closed its connection. */
  errors: number;
  /** ... of which the frontend's mistakes (ProtocolError). */
  protocolErrors: number;
  /** Connections dropped because the frontend truncated guest memory under us. */
  memoryFaults: number;
}

/** The socket path is held by a live process. */
export class SocketInUseError extends Error {
  constructor(readonly path: string) {
    super(`${path} is in use by a running process: stop it or choose another --socket path`);
  }
}

/** Makes `path` usable for listen(): absent is fine, a stale socket (nobody accepting) is removed,
 *  a live one or a non-socket file is an error with a message that says what to do. */
export function prepareSocketPath(path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket: remove it or choose another path`);
  let fd: number;
  try {
    fd = native.unixConnect(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ECONNREFUSED' || code === 'ENOENT') {
      unlinkSync(path);
      return;
    }
    throw err;
  }
  native.close(fd);
  throw new SocketInUseError(path);
}

export interface VhostUserServerEvents {
  connect: [];
  disconnect: [error: Error | undefined];
  listening: [path: string];
  /** Guest RAM is not shared with us (at most once per connection; see backend.ts). Without a
   *  listener the server logs the problem's message as an error. */
  memoryNotShared: [problem: GuestMemoryNotShared];
}

/** The frontend being served. */
interface Attached {
  conn: Connection;
  backend: Backend;
  /** When it last sent a complete message (or connected), by the server's clock. */
  lastActivity: number;
  /** Pending until the first message arrives. */
  firstMessageTimer: NodeJS.Timeout | undefined;
}

export class VhostUserServer extends EventEmitter<VhostUserServerEvents> {
  private listenFd = -1;
  private listenPoller: NativePoller | undefined;
  private listenRetry: NodeJS.Timeout | undefined;
  private socketPath: string | undefined;
  private attached: Attached | undefined;
  /** A newcomer that will replace the idle attached frontend once it sends a request. */
  private candidate: Attached | undefined;
  private readonly log: Logger;
  private readonly limited: RateLimitedLogger;
  private readonly clock: () => number;
  readonly stats: ServerStats = {
    connections: 0,
    refused: 0,
    idleReplaced: 0,
    silent: 0,
    errors: 0,
    protocolErrors: 0,
    memoryFaults: 0,
  };

  constructor(
    private readonly device: VhostUserDevice,
    private readonly options: ServerOptions = {},
  ) {
    super();
    this.log = options.logger ?? silentLogger;
    this.clock = options.clock ?? (() => performance.now());
    this.limited = new RateLimitedLogger(this.log, { intervalMs: options.logIntervalMs ?? 10_000, clock: this.clock });
  }

  get path(): string | undefined {
    return this.socketPath;
  }

  get connected(): boolean {
    return this.attached !== undefined;
  }

  /** Frontend connections served so far. */
  get connections(): number {
    return this.stats.connections;
  }

  /** The backend of the current connection (memory, queues, negotiated features). */
  get backend(): Backend | undefined {
    return this.attached?.backend;
  }

  /** Listens on `path` (after prepareSocketPath: a stale socket is replaced). */
  listen(path: string): void {
    if (this.listenFd >= 0) throw new Error('already listening');
    prepareSocketPath(path);
    this.listenFd = native.unixListen(path, 4);
    this.socketPath = path;
    this.listenPoller = new native.Poller(this.listenFd, (status) => this.onListenPoll(status), false);
    this.listenPoller.start(native.POLL_READABLE);
    this.log.info({ socket: path }, 'vhost-user socket listening');
    this.emit('listening', path);
  }

  /**
   * Listens on a socket the process was given already listening (systemd's socket activation, a
   * --fd argument): its owner made the socket file and removes it, close() leaves it. Returns the
   * path it is bound to ('' when abstract). Throws when `fd` is not a listening unix stream socket.
   */
  listenOn(fd: number): string {
    if (this.listenFd >= 0) throw new Error('already listening');
    const path = native.adoptListener(fd);
    this.listenFd = fd;
    this.listenPoller = new native.Poller(this.listenFd, (status) => this.onListenPoll(status), false);
    this.listenPoller.start(native.POLL_READABLE);
    this.log.info({ fd, socket: path }, 'vhost-user socket listening (given)');
    this.emit('listening', path);
    return path;
  }

  /** Disconnects the frontend, stops listening and removes the socket file. */
  close(): void {
    this.candidate?.conn.close();
    this.attached?.conn.close();
    this.listenPoller?.close();
    this.listenPoller = undefined;
    if (this.listenRetry) clearTimeout(this.listenRetry);
    this.listenRetry = undefined;
    if (this.listenFd >= 0) native.close(this.listenFd);
    this.listenFd = -1;
    if (this.socketPath !== undefined) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
      this.socketPath = undefined;
    }
    this.limited.close();
  }

  private onListenPoll(status: number): void {
    try {
      if (status < 0) return this.pauseAccepting(status);
      this.acceptAll();
    } catch (err) {
      this.caught(err, 'accepting a connection');
    }
  }

  private acceptAll(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd === -native.EAGAIN) return;
      if (fd === -native.EINTR || fd === -ECONNABORTED) continue;
      if (fd < 0) return this.pauseAccepting(fd);
      this.admit(fd);
    }
  }

  /** Accepting failed (EMFILE, ENFILE, ENOMEM, ...): the pending connection stays, the socket
   *  stays readable, and trying again at once would spin. Try again in a second. */
  private pauseAccepting(status: number): void {
    this.limited.error({ error: getSystemErrorName(status) }, 'accept failed: retrying in 1 s');
    this.listenPoller?.stop();
    if (this.listenRetry) return;
    this.listenRetry = setTimeout(() => {
      this.listenRetry = undefined;
      try {
        this.listenPoller?.start(native.POLL_READABLE);
      } catch (err) {
        this.caught(err, 'listening again');
      }
    }, 1000);
    this.listenRetry.unref();
  }

  /** A new connection: served, a candidate to replace an idle frontend, or refused while the
   *  attached frontend is in use (or a candidate already waits). */
  private admit(fd: number): void {
    const cur = this.attached;
    if (!cur) {
      this.become(this.open(fd));
      return;
    }
    if (this.candidate || !this.replaceable(cur)) {
      this.stats.refused++;
      this.limited.warn(
        { runningQueues: cur.backend.runningQueues, idleMs: Math.round(this.clock() - cur.lastActivity) },
        'a second frontend connected while one is attached: refused',
      );
      native.close(fd);
      return;
    }
    this.candidate = this.open(fd);
  }

  /** Whether the attached frontend may give way: no running queue, silent for idleTakeoverMs. */
  private replaceable(cur: Attached): boolean {
    return cur.backend.runningQueues === 0 && this.clock() - cur.lastActivity >= (this.options.idleTakeoverMs ?? 2000);
  }

  /** The candidate sent its first request: it replaces the idle frontend, if that one still is. */
  private promote(att: Attached): boolean {
    this.candidate = undefined;
    const cur = this.attached;
    if (cur && !this.replaceable(cur)) {
      this.stats.refused++;
      this.limited.warn({}, 'a second frontend connected while one is attached: refused');
      att.conn.close();
      return false;
    }
    if (cur) {
      const idle = Math.round(this.clock() - cur.lastActivity);
      this.stats.idleReplaced++;
      this.limited.warn({ idleMs: idle }, 'idle frontend dropped for a new connection');
      cur.conn.close(new Error(`idle for ${idle} ms with no running queue: replaced by a new connection`));
    }
    this.become(att);
    return this.attached === att;
  }

  /** Serves `att` as the frontend. */
  private become(att: Attached): void {
    this.attached = att;
    this.stats.connections++;
    this.limited.info({ connection: this.stats.connections }, 'vhost-user frontend connected');
    try {
      this.device.connected?.();
      this.emit('connect');
    } catch (err) {
      this.failed(att, err);
    }
  }

  /** A connection with its backend and its first-request deadline (not yet served). */
  private open(fd: number): Attached {
    let att: Attached | undefined;
    const backend = new Backend(this.device, (data) => att?.conn.send(data), {
      logger: this.log,
      limitedLog: this.limited,
      maxMemSlots: this.options.maxMemSlots ?? 32,
      eventIdx: this.options.eventIdx ?? true,
      indirectDesc: this.options.indirectDesc ?? true,
      ...(this.options.kicks ? { kicks: this.options.kicks } : {}),
      memoryNotShared: (problem) => {
        if (this.listenerCount('memoryNotShared') > 0) this.emit('memoryNotShared', problem);
        else this.limited.error({ kind: problem.kind, memoryBytes: problem.memoryBytes }, problem.message);
      },
      fail: (err) => {
        if (att && this.attached === att) this.failed(att, err);
      },
    });
    const conn = new Connection(
      fd,
      {
        message: (msg) => {
          if (!att) return;
          if (this.attached !== att && !this.promote(att)) return;
          att.lastActivity = this.clock();
          if (att.firstMessageTimer) {
            clearTimeout(att.firstMessageTimer);
            att.firstMessageTimer = undefined;
          }
          try {
            backend.handle(msg);
          } catch (err) {
            this.failed(att, err);
          }
        },
        closed: (err) => {
          if (att) this.detach(att, err);
        },
      },
      {
        maxQueuedMessages: this.options.maxQueuedReplies ?? 64,
        maxQueuedBytes: this.options.maxQueuedReplyBytes ?? 256 * 1024,
        overflowReason: 'frontend does not read its replies',
      },
    );
    const timeoutMs = this.options.firstMessageTimeoutMs ?? 5000;
    const a: Attached = { conn, backend, lastActivity: this.clock(), firstMessageTimer: undefined };
    att = a;
    a.firstMessageTimer = setTimeout(() => {
      a.firstMessageTimer = undefined;
      if (this.attached !== a && this.candidate !== a) return;
      this.stats.silent++;
      try {
        a.conn.close(new Error(`no request within ${timeoutMs} ms of connecting`));
      } catch (err) {
        this.caught(err, 'dropping a silent connection');
      }
    }, timeoutMs);
    a.firstMessageTimer.unref();
    return a;
  }

  /** An exception while serving `att`: counted, logged, and the connection closed. */
  private failed(att: Attached, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (error instanceof GuestMemoryFault) {
      this.stats.memoryFaults++;
    } else {
      this.stats.errors++;
      if (error instanceof ProtocolError) this.stats.protocolErrors++;
      // The frontend's mistakes are logged with the drop; anything else is a bug worth a stack.
      else this.limited.error({ err: error }, 'exception while serving the frontend');
    }
    att.conn.close(error);
  }

  /** An exception with no connection to blame (it closed already, or accepting failed). */
  private caught(err: unknown, what: string): void {
    this.stats.errors++;
    this.limited.error({ err, what }, 'vhost-user server error');
  }

  private detach(att: Attached, err: Error | undefined): void {
    if (att.firstMessageTimer) clearTimeout(att.firstMessageTimer);
    att.firstMessageTimer = undefined;
    if (this.candidate === att) {
      // A newcomer that went away (or was dropped) before its first request: nothing was served.
      this.candidate = undefined;
      return;
    }
    if (this.attached !== att) return;
    this.attached = undefined;
    try {
      att.backend.shutdown();
    } catch (e) {
      this.caught(e, 'releasing a connection');
    }
    // Keyed by the reason with its numbers taken out: each kind of drop is logged, and a peer
    // repeating one is held to a line per interval.
    if (err) this.limited.error({ reason: err.message }, 'vhost-user frontend dropped', `dropped: ${err.message.replace(/0x[0-9a-f]+|\d+/gi, '#')}`);
    else this.limited.info({}, 'vhost-user frontend disconnected');
    try {
      this.device.disconnected?.();
      this.emit('disconnect', err);
    } catch (e) {
      this.caught(e, 'reporting a disconnect');
    }
  }
}
