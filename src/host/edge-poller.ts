// One edge-triggered epoll set for the open host TCP sockets, watched by a single libuv poller
// (passt's design). A socket whose receive queue is the connection's send buffer stays readable
// while the guest has not acknowledged what it holds: a level-triggered poller would call back
// for it on every turn. Edge-triggered, an event says something new happened (data, the peer's
// FIN, room to write, an error): handlers take what is there and need not empty the socket.
//
// One set per process. Events come out of epoll_wait in bounded batches (the libuv poller on the
// epoll fd is level-triggered, so what one batch leaves comes on the next turn). Tokens of sockets
// removed during a batch are reused only after it, so a late event never reaches a newcomer.
//
// The guest's kicks are heard here too (`edgeKicks`, vhost-user-ts's KickSource): an eventfd in an
// edge-triggered set wakes it on every write without being read, so a kick costs no read, and the
// kicks and socket events of one turn are one entry into JavaScript, one batch (`aroundBatch`:
// the runtime's batch begins before the first and ends after the last, so what they send the
// guest is published once).
import { hostnet } from './native.js';
import type { HostPoller } from './native.js';

/** A socket in the set: it hears its events' EPOLL* bits. */
export interface EdgeTarget {
  edge(events: number): void;
}

const BATCH = 256;

export class EdgePoller {
  private readonly epfd: number;
  private readonly poller: HostPoller;
  private running = false;
  private readonly targets: (EdgeTarget | undefined)[] = [];
  private readonly free: number[] = [];
  /** Tokens given up during a batch: free once it ends. */
  private readonly retired: number[] = [];
  private draining = false;
  private count = 0;
  private readonly tokens = new Uint32Array(BATCH);
  private readonly events = new Uint32Array(BATCH);
  private readonly around: BatchHooks[] = [];
  /** Wake-ups that brought events, and the events (a socket's or a kick fd's, each one however
   *  many writes or segments it stands for): a process's turns and what woke it. */
  readonly stats = { wakes: 0, events: 0 };

  private constructor(epfd: number) {
    this.epfd = epfd;
    this.poller = new hostnet.Poller(epfd, () => this.drain(), false);
  }

  private static shared: EdgePoller | undefined;

  /** The process's set (made on first use). Throws when no epoll fd can be made (EMFILE). */
  static get(): EdgePoller {
    if (!EdgePoller.shared) {
      const fd = hostnet.epollCreate();
      if (fd < 0) throw Object.assign(new Error('epoll_create1 failed'), { errno: fd });
      EdgePoller.shared = new EdgePoller(fd);
    }
    return EdgePoller.shared;
  }

  /** Sockets in the set. */
  get size(): number {
    return this.count;
  }

  /** Adds fd, watched for its FIN, errors and hangup and for what `interest` names
   *  (EPOLLIN, EPOLLOUT): its token, or -errno (the socket then stays with its own poller). What
   *  is ready when added reports at once. */
  add(fd: number, target: EdgeTarget, interest: number): number {
    const token = this.free.pop() ?? this.targets.length;
    const rc = hostnet.epollCtl(this.epfd, 0, fd, token, interest);
    if (rc < 0) {
      if (token < this.targets.length) this.free.push(token);
      return rc;
    }
    this.targets[token] = target;
    this.count++;
    if (!this.running) {
      this.running = true;
      this.poller.start(hostnet.POLL_READABLE);
    }
    return token;
  }

  /** Watches fd (added as `token`) for `interest` from now on: 0 or -errno. What of it is ready
   *  reports at once; what it leaves out wakes nobody (the kernel filters it). */
  change(fd: number, token: number, interest: number): number {
    return hostnet.epollCtl(this.epfd, 1, fd, token, interest);
  }

  /** Removes fd (before it is closed). The poller stops with the last socket: an empty set keeps
   *  no process alive. */
  remove(fd: number, token: number): void {
    if (this.targets[token] === undefined) return;
    hostnet.epollDel(this.epfd, fd);
    this.targets[token] = undefined;
    this.count--;
    if (this.draining) this.retired.push(token);
    else this.free.push(token);
    if (this.count === 0 && this.running) {
      this.running = false;
      this.poller.stop();
    }
  }

  /** Runs `hooks.begin` before each batch of events and `hooks.end` after it (a runtime's batch
   *  around them all); until the returned function is called. Neither may throw. */
  aroundBatch(hooks: BatchHooks): () => void {
    this.around.push(hooks);
    return () => {
      const i = this.around.indexOf(hooks);
      if (i >= 0) this.around.splice(i, 1);
    };
  }

  private drain(): void {
    const n = hostnet.epollWait(this.epfd, this.tokens, this.events);
    if (n <= 0) return;
    this.stats.wakes++;
    this.stats.events += n;
    const around = this.around;
    for (let i = 0; i < around.length; i++) around[i]!.begin();
    this.draining = true;
    try {
      for (let i = 0; i < n; i++) this.targets[this.tokens[i]!]?.edge(this.events[i]!);
    } finally {
      this.draining = false;
      while (this.retired.length > 0) this.free.push(this.retired.pop()!);
      for (let i = around.length - 1; i >= 0; i--) around[i]!.end();
    }
  }
}

export interface BatchHooks {
  begin(): void;
  end(): void;
}

/** A kick fd (an eventfd) in the set; vhost-user-ts's KickWatch. */
class KickTarget implements EdgeTarget {
  private token: number;

  constructor(
    private readonly fd: number,
    private readonly kicked: () => void,
    private readonly lost: (reason: string) => void,
  ) {
    this.token = EdgePoller.get().add(fd, this, hostnet.EPOLLIN);
    if (this.token < 0) throw Object.assign(new Error(`epoll_ctl on kick fd ${fd} failed`), { errno: this.token });
  }

  edge(events: number): void {
    // An eventfd reports an error only when its counter would overflow, and never hangs up.
    if ((events & (hostnet.EPOLLERR | hostnet.EPOLLHUP)) !== 0) this.lost((events & hostnet.EPOLLERR) !== 0 ? 'EPOLLERR' : 'EPOLLHUP');
    else this.kicked();
  }

  close(): void {
    if (this.token < 0) return;
    EdgePoller.get().remove(this.fd, this.token);
    this.token = -1;
  }
}

/** The guest's kicks heard in the process's set: vhost-user-ts's KickSource. */
export const edgeKicks = {
  watch(fd: number, kicked: () => void, lost: (reason: string) => void): { close(): void } {
    return new KickTarget(fd, kicked, lost);
  },
};
