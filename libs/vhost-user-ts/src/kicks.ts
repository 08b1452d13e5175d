// Where a queue's kicks are heard.
//
// A kick fd is an eventfd (the backend takes nothing else) that the frontend writes once per kick.
// By default each one gets a poller of its own on Node's loop (`pollerKicks`): libuv polls it
// level-triggered, so every wake-up reads the counter back to zero, or it would fire again at
// once. That is one read and one entry into JavaScript per kick and queue, each apart from the
// application's other events of the same turn.
//
// An application that runs an edge-triggered epoll set of its own (one libuv poller for all its
// sockets, as passt does) can hear kicks there instead (`ServerOptions.kicks`): an eventfd wakes
// an edge-triggered watcher on every write, read or not (eventfd_write wakes its waiters each
// time), so the counter is never read (a u64: it would take 2^64 kicks to fill), and a turn in
// which kicks and socket events coincide enters JavaScript once, as one batch.
import { getSystemErrorName } from 'node:util';
import { native } from './native.js';

/** A kick fd being watched. */
export interface KickWatch {
  /** Stops watching (before the fd is closed). Idempotent. */
  close(): void;
}

/** Watches kick fds. */
export interface KickSource {
  /**
   * Starts watching `fd`, an eventfd: `kicked()` after each kick (several kicks between two
   * calls may come as one; a kick pending when watching starts comes at once), `lost(reason)`
   * once if the fd can no longer kick (then nothing more comes). Throws if it cannot watch it.
   * Neither callback may throw.
   */
  watch(fd: number, kicked: () => void, lost: (reason: string) => void): KickWatch;
}

/** The default: a draining, level-triggered poller per kick fd. */
export const pollerKicks: KickSource = {
  watch(fd, kicked, lost) {
    const poller = new native.Poller(
      fd,
      (status) => {
        if (status >= 0) {
          kicked();
          return;
        }
        // The poller stopped itself (end of file, POLLERR): the fd will never kick again.
        poller.close();
        lost(status === native.UV_EOF ? 'EOF' : getSystemErrorName(status));
      },
      true,
    );
    poller.start(native.POLL_READABLE);
    return poller;
  },
};
