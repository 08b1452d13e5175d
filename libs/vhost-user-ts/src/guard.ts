// Learning of SIGBUS faults the addon repaired (native/guard.cc). The signal handler cannot call
// JS: it maps a zero page over the faulting page, counts the fault on the mapping and writes 1 to
// an eventfd. Here that eventfd is polled, and each watched mapping with faults tells its owner,
// which drops the frontend that truncated its memory.
//
// The poller runs only while some mapping is watched, so a process with no guest memory mapped is
// not kept alive by it. There is one monitor per addon instance (per thread), kept on the addon's
// own exports object (`binding`): two copies of this module in one process (src and dist) share
// it, since libuv allows one poller per fd.
import type { NativeMapping, NativePoller } from './native.js';
import { binding, native } from './native.js';

export type FaultListener = (faults: number) => void;

class FaultMonitor {
  private readonly watched = new Map<NativeMapping, FaultListener>();
  private poller: NativePoller | undefined;

  watch(mapping: NativeMapping, listener: FaultListener): void {
    this.watched.set(mapping, listener);
    if (!this.poller) {
      this.poller = new native.Poller(native.guardWakeFd(), (status) => this.onWake(status), true);
      this.poller.start(native.POLL_READABLE);
    }
  }

  unwatch(mapping: NativeMapping): void {
    this.watched.delete(mapping);
    if (this.watched.size === 0 && this.poller) {
      this.poller.close();
      this.poller = undefined;
    }
  }

  private onWake(status: number): void {
    // The addon's own eventfd cannot hang up; should the poll fail anyway, keep watching.
    if (status < 0) this.poller?.start(native.POLL_READABLE);
    for (const [mapping, listener] of [...this.watched]) {
      const faults = native.mappingFaults(mapping);
      if (faults === 0) continue;
      try {
        listener(faults);
      } catch {
        // Listeners handle their own errors (the backend's drops its connection); nothing may
        // escape a poller callback, where it would be an uncaught exception.
      }
    }
  }
}

const KEY = Symbol.for('vhost-user-ts.faultMonitor');

/** The fault monitor of this thread's addon instance. */
export function faultMonitor(): Pick<FaultMonitor, 'watch' | 'unwatch'> {
  const holder = binding as unknown as Record<symbol, FaultMonitor | undefined>;
  return (holder[KEY] ??= new FaultMonitor());
}
