// Guest TCP data through the whole runtime to a host socket with a segment lost in the middle of a
// batch, segments joined before the stack (src/virtio/tcp-coalescer.ts) both ways a guest without
// TSO sends them: with complete checksums (the lost one fails its checksum) and with partial ones,
// NEEDS_CSUM (the lost one is not sent). Their payload goes by reference, from the device's buffer
// and guest memory, with one writev. The host gets every byte in order once the guest
// retransmits, and vunet acknowledges all of it.
import net from 'node:net';
import t from 'tap';
import type * as Tap from 'tap';
import { TcpOptions } from '../src/wire/index.js';
import { GW_IP, arpRequest, parseIpv4Frame, tcpFrame, tcpOptions } from './support/packets.js';
import { startHarness } from './support/vunet-harness.js';
import { until } from './support/wait.js';

const SYN = 0x02;
const ACK = 0x10;
const MSS = 1448;

/**
 * A connection from the guest to a host socket; 40 segments in one batch of which the 25th is lost
 * (`lose`: its checksum fails, or it is not sent), then its retransmission. The host must get every
 * byte in order, and vunet acknowledge all of it.
 */
async function lostSegment(t: Tap.Test, offloads: boolean, split?: number): Promise<void> {
  const received: Buffer[] = [];
  const server = net.createServer((s) => {
    s.on('data', (d) => received.push(d));
    s.on('error', () => undefined); // (reset when the harness closes)
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const h = await startHarness();
  t.teardown(() => h.close());

  h.send(arpRequest(GW_IP));
  const ts = (): TcpOptions => tcpOptions({ timestamp: true, tsVal: 1000, tsEcr: 0 });
  const syn = tcpOptions({ mss: 1460, timestamp: true, tsVal: 999, sackPermitted: true });
  const iss = 7000;
  h.send(tcpFrame(41000, port, iss, 0, SYN, undefined, { options: syn }));
  let ours = -1;
  const acks: number[] = [];
  const readAcks = async (ms: number): Promise<void> => {
    for (const f of await h.receive(1, ms)) {
      if (f[12] !== 0x08 || f[13] !== 0x00 || f[23] !== 6) continue;
      const { tcp } = parseIpv4Frame(f);
      if (tcp.syn) ours = tcp.seq;
      acks.push(tcp.ack);
    }
  };
  for (let i = 0; i < 50 && ours < 0; i++) await readAcks(100);
  t.ok(ours >= 0, 'SYN-ACK from vunet');

  const data = new Uint8Array(40 * MSS);
  let x = 2463534242;
  for (let i = 0; i < data.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = x & 0xff;
  }
  const segment = (k: number): Uint8Array => {
    return tcpFrame(41000, port, iss + 1 + k * MSS, (ours + 1) >>> 0, ACK, data.subarray(k * MSS, (k + 1) * MSS), { options: ts(), window: 2000 });
  };
  // With offloads (NEEDS_CSUM: the payload stays in guest memory until written) the 25th is not
  // sent; without, its payload has a bit flipped (its checksum fails).
  const header = new Uint8Array(12);
  if (offloads) {
    header[0] = 1; // NEEDS_CSUM, from the TCP header on, the checksum 16 bytes further
    header[6] = 34;
    header[8] = 16;
  }
  const bad = segment(24).slice();
  bad[bad.length - 10] = bad[bad.length - 10]! ^ 0x10;
  const coalescedBefore = h.vunet.device.stats.txCoalesced;
  for (let k = 0; k < 40; k++) {
    if (k !== 24) h.send(segment(k), header, split);
    else if (!offloads) h.send(bad, header, split);
  }
  await until(() => received.reduce((n, b) => n + b.length, 0) >= 24 * MSS, 'the data before the lost segment reaches the host', 5000);
  // The guest retransmits what was lost, as its TCP would.
  h.send(segment(24), header, split);
  await until(() => received.reduce((n, b) => n + b.length, 0) >= data.length, 'all of it reaches the host', 5000);
  t.same(new Uint8Array(Buffer.concat(received)), data, 'every byte, in order');
  const joined = h.vunet.device.stats.txCoalesced - coalescedBefore;
  const tcpStats = h.vunet.status().tcp as { bytesByReference: number };
  t.ok(joined >= 30, `segments were joined (${joined})`);
  t.ok(tcpStats.bytesByReference >= 24 * MSS, `joined data went to the host by reference (${tcpStats.bytesByReference} bytes)`);
  const end = (iss + 1 + data.length) >>> 0;
  for (let i = 0; i < 50 && !acks.includes(end); i++) await readAcks(100);
  t.ok(acks.includes(end), 'vunet acknowledges everything');
}

t.test('without offloads: joined segments, one with a bad checksum, reach the host whole and in order', (t) => lostSegment(t, false));

t.test('with NEEDS_CSUM: joined segments, one lost, reach the host whole and in order', (t) => lostSegment(t, true));

t.test('with NEEDS_CSUM, headers and payload in buffers of their own (a Linux guest without TSO): joined in place, one lost, whole and in order', (t) =>
  lostSegment(t, true, 66),
);

t.test('without offloads, headers and payload in buffers of their own: joined in place, one with a bad checksum, whole and in order', (t) =>
  lostSegment(t, false, 66),
);
