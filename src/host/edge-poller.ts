// One edge-triggered epoll set for the open host TCP sockets, watched by a single libuv poller
// (passt's design). A socket whose receive queue is the connection's send buffer stays readable
// while the guest has not acknowledged what it holds: a level-triggered poller would call back
// for it on every turn. Edge-triggered, an event says something new happened (data, the peer's
// FIN, room to write, an error): handlers take what is there and need not empty the socket.
//
// One set per process. Events come out of epoll_wait in bounded batches (the libuv poller on the
// epoll fd is level-triggered, so what one batch leaves comes on the next turn). Tokens of sockets
// removed during a batch are reused only after it, so a late event never reaches a newcomer.
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

  private drain(): void {
    const n = hostnet.epollWait(this.epfd, this.tokens, this.events);
    if (n <= 0) return;
    this.draining = true;
    try {
      for (let i = 0; i < n; i++) this.targets[this.tokens[i]!]?.edge(this.events[i]!);
    } finally {
      this.draining = false;
      while (this.retired.length > 0) this.free.push(this.retired.pop()!);
    }
  }
}
