// The listening side: one unix socket, one frontend at a time (vhost-user is point to point). When
// the frontend goes away every queue is stopped, every fd and mapping released, and the next
// connection is accepted, so a QEMU started with `reconnect=1` comes back to the same process.
import { EventEmitter } from 'node:events';
import { lstatSync, unlinkSync } from 'node:fs';
import { Backend, ProtocolError } from './backend.js';
import { Connection } from './connection.js';
import type { VhostUserDevice } from './device.js';
import type { Logger } from './logger.js';
import { silentLogger } from './logger.js';
import type { NativePoller } from './native.js';
import { native } from './native.js';

export interface ServerOptions {
  logger?: Logger;
  /** Memory slots offered to the frontend (CONFIGURE_MEM_SLOTS); default 32. */
  maxMemSlots?: number;
  /** Offer VIRTIO_RING_F_EVENT_IDX; default true. */
  eventIdx?: boolean;
  /** Offer VIRTIO_RING_F_INDIRECT_DESC; default true. */
  indirectDesc?: boolean;
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
}

export class VhostUserServer extends EventEmitter<VhostUserServerEvents> {
  private listenFd = -1;
  private listenPoller: NativePoller | undefined;
  private socketPath: string | undefined;
  private conn: Connection | undefined;
  private current: Backend | undefined;
  private readonly log: Logger;
  /** Frontend connections accepted so far. */
  connections = 0;

  constructor(
    private readonly device: VhostUserDevice,
    private readonly options: ServerOptions = {},
  ) {
    super();
    this.log = options.logger ?? silentLogger;
  }

  get path(): string | undefined {
    return this.socketPath;
  }

  get connected(): boolean {
    return this.conn !== undefined;
  }

  /** The backend of the current connection (memory, queues, negotiated features). */
  get backend(): Backend | undefined {
    return this.current;
  }

  /** Listens on `path` (after prepareSocketPath: a stale socket is replaced). */
  listen(path: string): void {
    if (this.listenFd >= 0) throw new Error('already listening');
    prepareSocketPath(path);
    this.listenFd = native.unixListen(path, 4);
    this.socketPath = path;
    this.listenPoller = new native.Poller(this.listenFd, () => this.acceptAll(), false);
    this.listenPoller.start(native.POLL_READABLE);
    this.log.info({ socket: path }, 'vhost-user socket listening');
    this.emit('listening', path);
  }

  /** Disconnects the frontend, stops listening and removes the socket file. */
  close(): void {
    this.conn?.close();
    this.listenPoller?.close();
    this.listenPoller = undefined;
    if (this.listenFd >= 0) native.close(this.listenFd);
    this.listenFd = -1;
    if (this.socketPath) {
      try {
        unlinkSync(this.socketPath);
      } catch {
        // already gone
      }
      this.socketPath = undefined;
    }
  }

  private acceptAll(): void {
    for (;;) {
      const fd = native.accept(this.listenFd);
      if (fd < 0) {
        if (fd !== -native.EAGAIN && fd !== -native.EINTR) this.log.warn({ errno: -fd }, 'accept failed');
        return;
      }
      if (this.conn) {
        this.log.warn('a second frontend connected while one is attached: refused');
        native.close(fd);
        continue;
      }
      this.attach(fd);
    }
  }

  private attach(fd: number): void {
    const backend = new Backend(this.device, (data) => conn.send(data), {
      logger: this.log,
      maxMemSlots: this.options.maxMemSlots ?? 32,
      eventIdx: this.options.eventIdx ?? true,
      indirectDesc: this.options.indirectDesc ?? true,
    });
    const conn: Connection = new Connection(fd, {
      message: (msg) => {
        try {
          backend.handle(msg);
        } catch (err) {
          if (!(err instanceof ProtocolError)) this.log.error({ err }, 'vhost-user request failed');
          conn.close(err as Error);
        }
      },
      closed: (err) => this.detach(backend, err),
    });
    this.conn = conn;
    this.current = backend;
    this.connections++;
    this.log.info({ connection: this.connections }, 'vhost-user frontend connected');
    this.device.connected?.();
    this.emit('connect');
  }

  private detach(backend: Backend, err: Error | undefined): void {
    backend.shutdown();
    this.conn = undefined;
    this.current = undefined;
    if (err) this.log.error({ reason: err.message }, 'vhost-user frontend dropped');
    else this.log.info('vhost-user frontend disconnected');
    this.device.disconnected?.();
    this.emit('disconnect', err);
  }
}
