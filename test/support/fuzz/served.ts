// "Is vunet still serving?": a well-behaved guest asks the gateway's MAC with ARP and must get the
// answer through the rings. Run between hostile inputs, so a target that survives but no longer
// works (a wedged queue, a frontend refused forever) is noticed.
import { GW_IP, arpRequest } from '../packets.js';
import { STANDARD_CONFIG, GuestDriver } from './driver.js';
import type { DriverConfig } from './driver.js';
import { NET_HDR_LEN } from '../../../src/virtio/net-device.js';

function isArpReplyFromGateway(f: Uint8Array): boolean {
  if (f.length < 42 || f[12] !== 0x08 || f[13] !== 0x06) return false;
  const op = (f[20]! << 8) | f[21]!;
  const sender = ((f[28]! << 24) | (f[29]! << 16) | (f[30]! << 8) | f[31]!) >>> 0;
  return op === 2 && sender === GW_IP;
}

/** Sends an ARP request for the gateway on `driver` and waits for the reply. */
export async function arpAnswered(driver: GuestDriver, timeoutMs = 3000): Promise<boolean> {
  const keep = driver.keepFrames;
  driver.keepFrames = true;
  driver.received.length = 0;
  try {
    const frame = arpRequest(GW_IP);
    const res = await driver.sendBatch([{ hdr: new Uint8Array(NET_HDR_LEN), frame, split: [NET_HDR_LEN + frame.length], indirect: false }], timeoutMs);
    if (!res.completed) return false;
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      driver.recycleRx();
      if (driver.received.some(isArpReplyFromGateway)) return true;
      if (performance.now() > deadline || !driver.connected) return false;
      await driver.rx.until(() => driver.rx.pendingUsed > 0, Math.max(1, deadline - performance.now()));
    }
  } finally {
    driver.keepFrames = keep;
    driver.received.length = 0;
  }
}

/** Connects a well-behaved frontend (retrying while the server still holds the previous one),
 *  checks ARP is answered, and disconnects. */
export async function servedByFreshFrontend(
  socketPath: string,
  waitDisconnected: () => Promise<void>,
  config: DriverConfig = STANDARD_CONFIG,
): Promise<boolean> {
  for (let attempt = 0; attempt < 5; attempt++) {
    await waitDisconnected();
    const d = await GuestDriver.connect(socketPath, config);
    if (!d) continue;
    try {
      return await arpAnswered(d);
    } finally {
      d.close();
    }
  }
  return false;
}
