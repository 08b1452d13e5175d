// The control socket: a unix stream socket beside the vhost-user socket, speaking JSON lines, for
// `vunet ctl` (as passt's pesto and gvproxy's API serve theirs). One request per line, one reply
// per request, in order:
//
//   → {"id": 1, "cmd": "add", "proto": "tcp", "spec": "8080:80"}
//   ← {"id": 1, "ok": true, "result": [...]}
//   ← {"id": 1, "ok": false, "error": "--tcp-forward: host port 8080 is forwarded already (8080:80)"}
//
// `id` is optional and echoed. Bounded: a line is at most MAX_LINE bytes (a longer one gets an
// error and the connection closes: no resynchronising inside a line), at most MAX_CLIENTS at once
// (one more gets an error and is closed), a client idle for IDLE_MS is closed, and one that leaves
// more than MAX_UNREAD of replies unread is not read from until it catches up. A request that
// fails, for any reason (bad JSON, unknown command, a handler that throws), gets an error reply;
// nothing a client sends reaches the process's own failure path.
import { chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { SocketInUseError, prepareSocketPath } from 'vhost-user-ts';
import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { UsageError } from './options.js';
import type { FlowLine, ForwardInfo, LeaseInfo, NeighbourLine, StatusSummary } from './status.js';

/** The longest request line, bytes (a forward spec is short; this leaves room to spare). */
export const MAX_LINE = 64 * 1024;
/** Control clients at once. */
export const MAX_CLIENTS = 16;
/** Replies a client may leave unread before its further requests wait (bytes). */
export const MAX_UNREAD = 4 * 1024 * 1024;
/** A client that sends nothing for this long is closed. */
export const IDLE_MS = 5 * 60_000;

/** A request as parsed: its command and the other fields. */
export interface ControlRequest {
  cmd: string;
  [field: string]: unknown;
}

/** Answers one request: the result (any JSON value), or throws; the message becomes the error. */
export type ControlHandler = (req: ControlRequest) => unknown;

/** A request the handler refuses as the caller's mistake (unknown command, bad argument). */
export class ControlError extends Error {}

/** The control socket path is held by a running process. */
export class ControlInUseError extends Error {
  constructor(readonly path: string) {
    super(`control socket ${path} is in use by a running vunet: stop it, or give this one another --control path (or --no-control)`);
  }
}

/** The widest permission bits the control socket gets: owner and group. */
const CONTROL_MODE_MAX = 0o770;

export class ControlServer {
  readonly stats = { clients: 0, requests: 0, errors: 0, refusedClients: 0 };
  private readonly clients = new Set<Socket>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly handler: ControlHandler,
    private readonly log: Logger | undefined,
  ) {
    server.on('connection', (socket) => this.connected(socket));
    // A failing accept (EMFILE...) costs that client only.
    server.on('error', (err) => this.log?.warn({ err: err.message }, 'control socket error'));
  }

  /**
   * Listens on `path`: a stale socket there (nobody accepting) is replaced; a live one is a
   * ControlInUseError; a file that is not a socket an Error saying so. The socket is made 0600;
   * `mode` (--socket-mode) then sets its permission bits, never those for others: whoever may
   * connect may add forwards and read every flow, so `--socket-mode 0666` (any local user may
   * attach a VM) leaves the control socket 0660.
   */
  static async listen(path: string, handler: ControlHandler, opts: { log?: Logger; mode?: number } = {}): Promise<ControlServer> {
    clearStale(path);
    const server = createServer({ allowHalfOpen: false });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // Made 0600 (the bind happens within listen()): no moment when others may connect.
      const umask = process.umask(0o177);
      try {
        server.listen(path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    if (opts.mode !== undefined) chmodSync(path, opts.mode & CONTROL_MODE_MAX);
    return new ControlServer(path, server, handler, opts.log);
  }

  get clientCount(): number {
    return this.clients.size;
  }

  private connected(socket: Socket): void {
    if (this.closed || this.clients.size >= MAX_CLIENTS) {
      this.stats.refusedClients++;
      socket.end(`${JSON.stringify({ ok: false, error: `too many control clients (at most ${MAX_CLIENTS}): try again` })}\n`);
      socket.destroySoon();
      return;
    }
    this.stats.clients++;
    this.clients.add(socket);
    socket.setEncoding('utf8');
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    let pending = '';
    let done = false;
    let waiting = false;
    // Lines are answered one at a time; while the client leaves more than MAX_UNREAD of replies
    // unread, reading stops (what is already received waits in `pending`, at most a chunk more
    // than a line).
    const pump = (): void => {
      while (!done) {
        if (socket.writableLength > MAX_UNREAD) {
          if (!waiting) {
            waiting = true;
            socket.pause();
            socket.once('drain', () => {
              waiting = false;
              socket.resume();
              pump();
            });
          }
          return;
        }
        const nl = pending.indexOf('\n');
        if (nl < 0) break;
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (Buffer.byteLength(line) > MAX_LINE) return this.tooLong(socket, () => (done = true));
        if (line.trim() !== '') socket.write(`${this.answer(line)}\n`);
      }
      if (!done && Buffer.byteLength(pending) > MAX_LINE) this.tooLong(socket, () => (done = true));
    };
    socket.on('data', (chunk: string) => {
      if (done) return;
      pending += chunk;
      pump();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.clients.delete(socket));
  }

  private tooLong(socket: Socket, stop: () => void): void {
    stop();
    this.stats.errors++;
    socket.end(`${JSON.stringify({ ok: false, error: `request longer than ${MAX_LINE} bytes: one JSON object per line` })}\n`);
    socket.destroySoon();
  }

  /** One request line to its reply line. Never throws. */
  answer(line: string): string {
    this.stats.requests++;
    let id: unknown;
    try {
      let req: unknown;
      try {
        req = JSON.parse(line);
      } catch {
        throw new ControlError('not JSON: send one JSON object per line, such as {"cmd":"status"}');
      }
      if (typeof req !== 'object' || req === null || Array.isArray(req)) throw new ControlError('a request is a JSON object such as {"cmd":"status"}');
      const r = req as Record<string, unknown>;
      id = r.id;
      if (typeof r.cmd !== 'string') throw new ControlError('the request has no "cmd" string');
      const result = this.handler(r as ControlRequest);
      return JSON.stringify({ ...(id !== undefined ? { id } : {}), ok: true, result: result ?? null });
    } catch (err) {
      this.stats.errors++;
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof ControlError || err instanceof UsageError) this.log?.debug({ err: message }, 'control request refused');
      else this.log?.warn({ err: message }, 'control request failed');
      return JSON.stringify({ ...(id !== undefined ? { id } : {}), ok: false, error: message });
    }
  }

  /** Stops listening, closes the clients and removes the socket file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    // net.Server removes its own unix socket file when it closes.
    this.server.close();
  }
}

/** Clears `path` for listen() as the vhost-user socket's is cleared (vhost-user-ts's
 *  prepareSocketPath): absent is fine, a stale socket is removed, a live one is in use. */
function clearStale(path: string): void {
  try {
    prepareSocketPath(path);
  } catch (err) {
    if (err instanceof SocketInUseError) throw new ControlInUseError(path);
    throw err;
  }
}

/** What the control commands ask of the running vunet (the Vunet class gives it). */
export interface ControlTarget {
  forwards(): ForwardInfo[];
  addForwards(proto: 'tcp' | 'udp', spec: string): ForwardInfo[];
  removeForwards(proto: 'tcp' | 'udp', spec: string): ForwardInfo[];
  leases(): LeaseInfo[];
  neighbours(): NeighbourLine[];
  flows(): FlowLine[];
  summary(): StatusSummary;
  status(): Record<string, unknown>;
}

/** The commands, and what each takes. */
export const CONTROL_COMMANDS = ['status', 'forwards', 'add', 'remove', 'leases', 'neighbours', 'flows', 'counters'] as const;

/** The control socket's commands on `target`. A caller's mistake throws ControlError (or the
 *  options' UsageError, whose message is the same as for the command line). */
export function controlHandler(target: ControlTarget): ControlHandler {
  const proto = (req: ControlRequest): 'tcp' | 'udp' => {
    if (req.proto === 'tcp' || req.proto === 'udp') return req.proto;
    throw new ControlError(`"${req.cmd}" needs "proto": "tcp" or "udp"`);
  };
  const spec = (req: ControlRequest): string => {
    if (typeof req.spec === 'string' && req.spec !== '') return req.spec;
    throw new ControlError(`"${req.cmd}" needs "spec", a forward as -t/-u take it, such as "8080:80"`);
  };
  return (req) => {
    switch (req.cmd) {
      case 'status':
        return target.summary();
      case 'forwards':
        return target.forwards();
      case 'add':
        return target.addForwards(proto(req), spec(req));
      case 'remove':
        return target.removeForwards(proto(req), spec(req));
      case 'leases':
        return target.leases();
      case 'neighbours':
      case 'neighbors':
        return target.neighbours();
      case 'flows':
        return target.flows();
      case 'counters':
        return target.status();
      default:
        throw new ControlError(`unknown command ${JSON.stringify(req.cmd)}: one of ${CONTROL_COMMANDS.join(', ')}`);
    }
  };
}
