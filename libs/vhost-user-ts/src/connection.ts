// Message framing on a vhost-user unix socket: moves bytes and fds, knows no request semantics.
// Used by both the backend (server side) and the test frontend.
//
// A message is read as its 12-byte header (the fds arrive with it: the sender passes them with the
// first byte) and then `size` payload bytes. Partial reads are resumed on the next readable event.
// Every fd received is either handed over with its message or closed here.
//
// Everything held per connection is bounded: one receive buffer of the largest payload, at most
// MAX_FDS fds, and a send queue of at most `maxQueuedMessages` messages or `maxQueuedBytes` bytes
// that the peer has not read yet. A peer that stops reading while it keeps sending requests is
// closed when the queue is full, instead of growing it without end.
import type { NativePoller } from './native.js';
import { native } from './native.js';
import { FLAG_VERSION_MASK, HEADER_SIZE, MAX_FDS, MAX_PAYLOAD, VERSION } from './protocol.js';

export interface Message {
  request: number;
  flags: number;
  size: number;
  /** Header + payload; valid only during the callback (the buffer is reused). */
  buf: Uint8Array;
  /** fds received with the message; the callback owns them (close what it does not keep). */
  fds: number[];
}

export class FramingError extends Error {}

export interface ConnectionEvents {
  message(msg: Message): void;
  /** The peer closed, or a framing or socket error (then `err` says what). */
  closed(err?: Error): void;
}

export interface ConnectionOptions {
  /** Messages queued because the peer does not read, before the connection is closed (default 64). */
  maxQueuedMessages?: number;
  /** Bytes queued likewise (default 256 KiB). */
  maxQueuedBytes?: number;
  /** The reason given when the queue overflows (default "peer does not read what we send"). */
  overflowReason?: string;
}

export class Connection {
  private readonly rx = new Uint8Array(HEADER_SIZE + MAX_PAYLOAD);
  private rxHave = 0;
  private rxFds: number[] = [];
  private readonly txQueue: { data: Uint8Array; off: number; fds: readonly number[] }[] = [];
  private txBytes = 0;
  private readonly maxQueuedMessages: number;
  private readonly maxQueuedBytes: number;
  private readonly overflowReason: string;
  private readonly poller: NativePoller;
  private isClosed = false;
  private waitingWritable = false;

  constructor(
    readonly fd: number,
    private readonly events: ConnectionEvents,
    opts: ConnectionOptions = {},
  ) {
    this.maxQueuedMessages = opts.maxQueuedMessages ?? 64;
    this.maxQueuedBytes = opts.maxQueuedBytes ?? 256 * 1024;
    this.overflowReason = opts.overflowReason ?? 'peer does not read what we send';
    this.poller = new native.Poller(fd, (status, ev) => this.onPoll(status, ev), false);
    this.poller.start(native.POLL_READABLE);
  }

  /** Messages waiting for the peer to read (queued or partly sent). */
  get queuedMessages(): number {
    return this.txQueue.length;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends a whole message (header and payload already in `data`) with optional fds, which stay
   *  the caller's. Messages are copied and go out in order; EAGAIN waits for writability. When
   *  the queue is already full the connection is closed (`closed` reports the overflow). */
  send(data: Uint8Array, fds: readonly number[] = []): void {
    if (this.isClosed) return;
    if (this.txQueue.length >= this.maxQueuedMessages || this.txBytes + data.length > this.maxQueuedBytes) {
      const queued = `${this.txQueue.length} messages, ${this.txBytes} bytes queued`;
      return this.close(new FramingError(`${this.overflowReason} (${queued})`));
    }
    this.txQueue.push({ data: data.slice(), off: 0, fds });
    this.txBytes += data.length;
    if (this.txQueue.length === 1) this.flushTx();
  }

  /** Closes the socket and every fd still held; reports `closed` once. */
  close(err?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.poller.close();
    for (const fd of this.rxFds) native.close(fd);
    this.rxFds = [];
    this.txQueue.length = 0;
    this.txBytes = 0;
    native.close(this.fd);
    this.events.closed(err);
  }

  private flushTx(): void {
    while (this.txQueue.length > 0 && !this.isClosed) {
      const item = this.txQueue[0]!;
      const n = native.sendMsg(this.fd, item.data, item.off, item.data.length - item.off, item.off === 0 ? item.fds : []);
      if (n === -native.EAGAIN) {
        this.waitingWritable = true;
        this.poller.start(native.POLL_READABLE | native.POLL_WRITABLE);
        return;
      }
      if (n === -native.EINTR) continue;
      if (n < 0) return this.close(new FramingError(`sendmsg failed: errno ${-n}`));
      item.off += n;
      if (item.off === item.data.length) {
        this.txQueue.shift();
        this.txBytes -= item.data.length;
      }
    }
    if (this.waitingWritable && !this.isClosed) {
      this.waitingWritable = false;
      this.poller.start(native.POLL_READABLE);
    }
  }

  private onPoll(status: number, ev: number): void {
    if (this.isClosed) return;
    if (status < 0) {
      this.close(new FramingError(`poll error ${status}`));
      return;
    }
    // Nothing may escape a poller callback (it would be an uncaught exception): whatever a
    // handler throws costs this connection only.
    try {
      if ((ev & native.POLL_WRITABLE) !== 0) this.flushTx();
      if ((ev & native.POLL_READABLE) !== 0) this.readAll();
    } catch (err) {
      this.close(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private readAll(): void {
    while (!this.isClosed) {
      const want = this.rxHave < HEADER_SIZE ? HEADER_SIZE - this.rxHave : HEADER_SIZE + this.payloadSize() - this.rxHave;
      const r = native.recvMsg(this.fd, this.rx, this.rxHave, want, MAX_FDS);
      for (const fd of r.fds) this.rxFds.push(fd);
      if (r.truncated) return this.close(new FramingError('control message truncated: too many fds'));
      if (this.rxFds.length > MAX_FDS) return this.close(new FramingError('too many fds on one message'));
      if (r.n === -native.EAGAIN) return;
      if (r.n === -native.EINTR) continue;
      if (r.n < 0) return this.close(r.n === -native.ECONNRESET ? undefined : new FramingError(`recvmsg failed: errno ${-r.n}`));
      if (r.n === 0) {
        if (this.rxHave > 0) return this.close(new FramingError('peer closed in the middle of a message'));
        return this.close();
      }
      this.rxHave += r.n;
      if (this.rxHave === HEADER_SIZE) {
        const flags = this.u32(4);
        if ((flags & FLAG_VERSION_MASK) !== VERSION) {
          return this.close(new FramingError(`bad version in flags 0x${flags.toString(16)}`));
        }
        if (this.payloadSize() > MAX_PAYLOAD) {
          return this.close(new FramingError(`payload of ${this.payloadSize()} bytes exceeds ${MAX_PAYLOAD}`));
        }
      }
      if (this.rxHave >= HEADER_SIZE && this.rxHave === HEADER_SIZE + this.payloadSize()) this.deliver();
    }
  }

  private deliver(): void {
    const msg: Message = {
      request: this.u32(0),
      flags: this.u32(4),
      size: this.payloadSize(),
      buf: this.rx,
      fds: this.rxFds,
    };
    this.rxFds = [];
    this.rxHave = 0;
    this.events.message(msg);
  }

  private payloadSize(): number {
    return this.u32(8);
  }

  private u32(off: number): number {
    const b = this.rx;
    return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
  }
}
