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

export type MemfdSealing = 'sealed' | 'sealable' | 'unsealable';

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
   *  the level-triggered poll does not fire again; the value read is passed as the third argument.
   *  A negative status stops the poller (until start() again): UV_EBADF for POLLERR, and for a
   *  draining poller UV_EOF when the fd hung up (read returned 0, e.g. a pipe whose writer closed,
   *  or POLL_DISCONNECT) or -errno when the read failed. Without that, such an fd would be
   *  reported readable forever. */
  new (fd: number, callback: (status: number, events: number, value: number) => void, drainEventfd: boolean): NativePoller;
}

/** GuestMemory's segments as the addon sees them (memoryTable). The object keeps the table alive;
 *  popChains names it by `id`. */
export interface NativeMemoryTable {
  readonly id: number;
}

export interface NativeBinding {
  readonly POLL_READABLE: number;
  readonly POLL_WRITABLE: number;
  /** UV_DISCONNECT (EPOLLRDHUP): for a draining Poller, ends polling like end of file. */
  readonly POLL_DISCONNECT: number;
  /** The (negative) status a draining Poller reports when its fd reached end of file. */
  readonly UV_EOF: number;
  readonly EAGAIN: number;
  readonly EINTR: number;
  readonly EPIPE: number;
  readonly ECONNRESET: number;

  /** socket(AF_UNIX, SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC), bind(path), listen(backlog). Throws. */
  unixListen(path: string, backlog: number): number;
  /** Takes over a listening unix stream socket the process was given (socket activation): checks
   *  it is one, makes it non-blocking and close-on-exec; returns its path ('' when abstract or
   *  unnamed). Throws (ENOTSOCK, EINVAL for another kind of socket, EBADF). */
  adoptListener(fd: number): string;
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

  /** eventfd(initval, EFD_CLOEXEC|EFD_NONBLOCK), with EFD_SEMAPHORE when asked (for tests of
   *  what a hostile frontend could send). Throws. */
  eventfd(initval: number, semaphore?: boolean): number;
  /** Reads and clears the counter: the value (> 0), or -errno (-EAGAIN when it was zero). */
  eventfdRead(fd: number): number;
  /** Adds `value` to the counter: 0 or -errno. */
  eventfdWrite(fd: number, value: number): number;

  /** memmove of src[srcOffset, +length) to dst[dstOffset, +length), making no view (what a
   *  descriptor chain copies per segment). Throws on a range outside either array. */
  copy(src: Uint8Array, srcOffset: number, length: number, dst: Uint8Array, dstOffset: number): void;
  /** Asks the CPU for the cache lines of buf[offset, +length) (the first 4 KiB at most) and
   *  returns at once; a range outside buf is clipped. */
  prefetch(buf: Uint8Array, offset: number, length: number): void;

  /** memfd_create then ftruncate(size). Throws. For test frontends. `sealing` (default 'sealed')
   *  is what QEMU's memory-backend-memfd does by default: MFD_ALLOW_SEALING, then F_SEAL_GROW |
   *  F_SEAL_SHRINK | F_SEAL_SEAL. 'sealable': MFD_ALLOW_SEALING and no seal yet; 'unsealable':
   *  without MFD_ALLOW_SEALING, so the file can never be sealed. */
  memfdCreate(name: string, size: number, sealing?: MemfdSealing): number;
  /** pipe2(O_NONBLOCK|O_CLOEXEC): [readFd, writeFd]. Throws. */
  pipe(): [number, number];
  /** What `fd` is: 'eventfd', 'eventfd-semaphore' (EFD_SEMAPHORE, where the kernel says so), another
   *  anonymous inode by its /proc name ('anon_inode:[timerfd]'), or from fstat 'regular' (memfds,
   *  tmpfs and hugetlbfs files too), 'fifo' (pipes), 'socket', 'directory', 'character', 'block',
   *  'symlink', 'unknown'. Needs /proc. Throws (EBADF). */
  fdKind(fd: number): string;
  /** Seals the file against shrinking (fcntl F_ADD_SEALS F_SEAL_SHRINK) unless it already is:
   *  0 when it is sealed now, else -errno (-EPERM: sealing not allowed, e.g. a memfd made
   *  without MFD_ALLOW_SEALING or a tmpfs file; -EINVAL: the filesystem has no seals). */
  sealShrink(fd: number): number;
  /** mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset) cut into chunks. The fd
   *  may be closed afterwards. `offset` must be page aligned (EINVAL otherwise). Throws. */
  mmap(fd: number, offset: number, length: number, chunkSize: number): NativeMapping;
  /** Detaches every chunk ArrayBuffer (views over it drop to length 0), then munmaps. Idempotent. */
  munmap(mapping: NativeMapping): void;

  /** Number of live mappings made by mmap and not yet unmapped (for leak tests). */
  liveMappings(): number;

  /** Whether a SIGBUS inside the mapping is repaired by the addon's guard: every mapping is, unless
   *  the guard's fixed table (1024 entries) was full. A repaired fault maps a zero page over the
   *  faulting page (the access completes), is counted on the mapping and wakes guardWakeFd(). */
  mappingGuarded(mapping: NativeMapping): boolean;
  /** SIGBUS faults repaired in the mapping since the last call. */
  mappingFaults(mapping: NativeMapping): number;
  /** The eventfd (owned by the addon) written once per repaired fault in a mapping of this thread. */
  guardWakeFd(): number;

  /** The table popChains translates guest-physical addresses with: GuestMemory's segments, five
   *  numbers each in `rows` (in guest-physical order): gpa, length, the index of its mapping in
   *  `mappings`, its first byte's offset in that mapping, and that byte's offset in its chunk. It
   *  holds the mappings; once one is unmapped the table translates nothing. Throws on rows that
   *  are not disjoint, sorted ranges of their mappings. */
  memoryTable(mappings: readonly NativeMapping[], rows: Float64Array): NativeMemoryTable;
  /** VirtQueue.popSpans's walk (native/ring.cc says what it takes and what it leaves to pop(), and
   *  the exchange's layout, PopField in virtqueue.ts): returns the chains taken, described in the
   *  exchange. */
  popChains(exchange: Uint32Array): number;

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
  throw new Error(`vhost-user-ts: native addon not built (run \`npm rebuild vhost-user-ts\`): ${String(lastError)}`);
}

/** The addon's own exports object: one per addon instance (per thread), shared by every copy of
 *  this module in the process (src and dist). Only for what must be kept per instance (guard.ts);
 *  calls go through `native`. */
export const binding: NativeBinding = load();

// A copy by spread: the exports object holds its functions in dictionary mode (each was added by
// a keyed store), so every `binding.f(...)` would be a generic property load (V8's LoadIC builtin).
// The copy is a fast-mode object, which optimized code reads from a fixed slot. Nothing may add a
// property to it: a keyed store of a new property would turn it back into a dictionary.
export const native: NativeBinding = { ...binding };
