// Waits on events rather than on guessed times.

/** Resolves once `cond()` holds (checked every 2 ms), or rejects after `ms` naming `what`. */
export async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/**
 * Resolves once the event loop has polled its fds at least twice more (three check phases from
 * now: the first may come before this iteration's poll is over). Where the other side lives in
 * this process (the vhost-user backend and its test frontend) and the kernel makes an eventfd or
 * socket ready as it is written, a kick, call or message sent before settle() has been handled
 * after it, and a level-triggered fd left ready would have been reported again: what checks that
 * something did NOT happen waits for this.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}
