// Message framing on a vhost-user unix socket: moves bytes and fds, knows no request semantics.
// Used by both the backend (server side) and the test frontend.
//
// A message is read as its 12-byte header (the fds arrive with it: the sender passes them with the
// first byte) and then `size` payload bytes. Partial reads are resumed on the next readable event.
// Every fd received is either handed over with its message or closed here.
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

export class Connection {
  private readonly rx = new Uint8Array(HEADER_SIZE + MAX_PAYLOAD);
  private rxHave = 0;
  private rxFds: number[] = [];
  private readonly txQueue: { data: Uint8Array; off: number; fds: readonly number[] }[] = [];
  private readonly poller: NativePoller;
  private isClosed = false;
  private waitingWritable = false;

  constructor(
    readonly fd: number,
    private readonly events: ConnectionEvents,
  ) {
    this.poller = new native.Poller(fd, (status, ev) => this.onPoll(status, ev), false);
    this.poller.start(native.POLL_READABLE);
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends a whole message (header and payload already in `data`) with optional fds, which stay
   *  the caller's. Messages are copied and go out in order; EAGAIN waits for writability. */
  send(data: Uint8Array, fds: readonly number[] = []): void {
    if (this.isClosed) return;
    this.txQueue.push({ data: data.slice(), off: 0, fds });
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
      if (item.off === item.data.length) this.txQueue.shift();
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
    if (ev & native.POLL_WRITABLE) this.flushTx();
    if (ev & native.POLL_READABLE) this.readAll();
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
