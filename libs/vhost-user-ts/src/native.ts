// The native addon (native/addon.cc): the few system calls Node core lacks. Everything here is
// non-blocking; calls that can fail for an expected reason return a negative errno instead of
// throwing, so hot paths never pay for exceptions. Unexpected failures throw an ErrnoError-like
// Error whose `code` is the errno name (e.g. 'EADDRINUSE') and whose `errno` is the number.
import { createRequire } from 'node:module';

/** Result of recvMsg. `n` is the byte count (0 means end of stream), or -errno (e.g. -EAGAIN). */
export interface RecvResult {
  n: number;
  /** File descriptors received with this message (SCM_RIGHTS, MSG_CMSG_CLOEXEC). The caller owns them. */
  fds: number[];
  /** The control message was truncated (MSG_CTRUNC): some fds were lost. Treat as a protocol error. */
  truncated: boolean;
}

/** A shared mapping of a file (MAP_SHARED, PROT_READ|PROT_WRITE) cut into chunks of at most
 *  `chunkSize` bytes, each an external ArrayBuffer (Node caps one ArrayBuffer at 4 GiB). */
export interface NativeMapping {
  readonly chunks: ArrayBuffer[];
  readonly chunkSize: number;
  readonly length: number;
}

/** Polls an fd through libuv (uv_poll_t) on the Node event loop. */
export interface NativePoller {
  /** Start or change the watched events (POLL_READABLE | POLL_WRITABLE). */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the handle; the fd itself is not closed. Idempotent. */
  close(): void;
}

export interface NativePollerConstructor {
  /** `callback(status, events)`: status is 0 or a negative libuv error; events is the ready set.
   *  With `drainEventfd` the addon reads the eventfd counter (non-blocking) before calling back, so
   *  the level-triggered poll does not fire again; the value read is passed as the third argument. */
  new (fd: number, callback: (status: number, events: number, value: number) => void, drainEventfd: boolean): NativePoller;
}

export interface NativeBinding {
  readonly POLL_READABLE: number;
  readonly POLL_WRITABLE: number;
  readonly EAGAIN: number;
  readonly EINTR: number;
  readonly EPIPE: number;
  readonly ECONNRESET: number;

  /** socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC), bind(path), listen(backlog). Throws. */
  unixListen(path: string, backlog: number): number;
  /** Connects to a unix socket path; the returned fd is non-blocking and close-on-exec. Throws. */
  unixConnect(path: string): number;
  /** accept4(SOCK_NONBLOCK|SOCK_CLOEXEC); -errno (e.g. -EAGAIN) when none is pending. */
  accept(fd: number): number;
  /** recvmsg into buf[offset, offset+length) with room for up to `maxFds` fds. */
  recvMsg(fd: number, buf: Uint8Array, offset: number, length: number, maxFds: number): RecvResult;
  /** sendmsg of buf[offset, offset+length) with `fds` as SCM_RIGHTS (MSG_NOSIGNAL). Bytes sent or -errno. */
  sendMsg(fd: number, buf: Uint8Array, offset: number, length: number, fds: readonly number[]): number;
  /** close(fd); 0 or -errno. */
  close(fd: number): number;

  /** eventfd(initval, EFD_CLOEXEC|EFD_NONBLOCK). Throws. */
  eventfd(initval: number): number;
  /** Reads and clears the counter: the value (> 0), or -errno (-EAGAIN when it was zero). */
  eventfdRead(fd: number): number;
  /** Adds `value` to the counter: 0 or -errno. */
  eventfdWrite(fd: number, value: number): number;

  /** memfd_create(name, MFD_CLOEXEC) then ftruncate(size). Throws. For test frontends. */
  memfdCreate(name: string, size: number): number;
  /** mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset) cut into chunks. The fd
   *  may be closed afterwards. `offset` must be page aligned (EINVAL otherwise). Throws. */
  mmap(fd: number, offset: number, length: number, chunkSize: number): NativeMapping;
  /** Detaches every chunk ArrayBuffer (views over it drop to length 0), then munmaps. Idempotent. */
  munmap(mapping: NativeMapping): void;

  /** Number of live mappings made by mmap and not yet unmapped (for leak tests). */
  liveMappings(): number;

  Poller: NativePollerConstructor;
}

const require = createRequire(import.meta.url);

function load(): NativeBinding {
  // dist/src/native.js and src/native.ts both sit two levels under the package root.
  const candidates = ['../build/Release/vhost_user_native.node', '../../build/Release/vhost_user_native.node'];
  let lastError: unknown;
  for (const rel of candidates) {
    try {
      return require(rel) as NativeBinding;
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(
    `vhost-user-ts: native addon not built (run \`npm rebuild vhost-user-ts\`): ${String(lastError)}`,
  );
}

export const native: NativeBinding = load();
