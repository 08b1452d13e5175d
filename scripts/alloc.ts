// `npm run alloc [-- --rounds N]`: the bytes vunet allocates per frame on each data path, in
// steady state.
//
// The whole runtime runs in this process, driven by the test frontend of vhost-user-ts (the harness
// the runtime tests use: frames go in through the TX ring, come out of the RX ring) against host
// sockets on the loopback: a UDP echo server, ping sockets, TCP servers. For each path a warm-up,
// then rounds of 32 guest frames (one kick each) and their answers, under V8's sampling heap
// profiler (64-byte interval, objects a scavenge collected included). An allocation counts as
// vunet's when its stack holds vunet's code (src/, libs/vhost-user-ts/) and not the frontend's
// (test/support/, the library's testing/): what the test guest itself allocates is left out.
//
// Per frame means per frame crossing the guest link either way. What is left in steady state is
// per batch (the clock read, the timer's deadline), spread over the batch's frames: a path that
// allocates per frame shows tens to hundreds of bytes here. Host→guest TCP is not here (the test
// frontend takes frames of one receive buffer, not the segments of GUEST_TSO): `npm run bench`
// measures it, with TCP both ways at full speed (scavenges per GB, --profile).
import dgram from 'node:dgram';
import { Session } from 'node:inspector/promises';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TcpOptions } from '../src/wire/index.js';
import { GW_IP, arpReply, arpRequest, echoRequest, parseIpv4Frame, tcpFrame, udpFrame } from '../test/support/packets.js';
import { startHarness } from '../test/support/vunet-harness.js';
import type { Harness } from '../test/support/vunet-harness.js';

const BATCH = 32;
const MSS = 1448;
const SYN = 0x02;
const ACK = 0x10;
/** The stack's DNS address (10.0.2.3): pings to it are answered by the stack itself. */
const DNS_IP = (10 << 24) | (2 << 8) | 3;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  callFrame: CallFrame;
  selfSize: number;
  children: ProfileNode[];
}

const where = (f: CallFrame): string =>
  `${f.functionName || '(anonymous)'} ${f.url.replace(`file://${ROOT}`, '').replace(/^node:/, 'node:')}:${f.lineNumber + 1}`;

/** vunet's bytes in a sampled profile, and its allocation sites (innermost three frames). */
function vunetShare(head: ProfileNode): { bytes: number; sites: Map<string, number> } {
  const sites = new Map<string, number>();
  let bytes = 0;
  const walk = (n: ProfileNode, path: CallFrame[]): void => {
    const p = [...path, n.callFrame];
    if (n.selfSize > 0) {
      const urls = p.map((f) => f.url);
      const frontend = urls.some((u) => u.includes('/test/support/') || u.includes('/testing/') || u.includes('/scripts/'));
      const ours = urls.some((u) => u.includes(`${ROOT}src/`) || u.includes('/vhost-user-ts/'));
      if (ours && !frontend) {
        bytes += n.selfSize;
        const site = p.slice(-3).reverse().map(where).join(' ← ');
        sites.set(site, (sites.get(site) ?? 0) + n.selfSize);
      }
    }
    for (const c of n.children) walk(c, p);
  };
  walk(head, []);
  return { bytes, sites };
}

/** One data path: `round()` sends a batch of guest frames and waits for what answers them;
 *  returns the frames that crossed the link both ways. */
interface DataPath {
  name: string;
  round(): Promise<number>;
}

async function measure(session: Session, path: DataPath, rounds: number): Promise<void> {
  for (let i = 0; i < Math.max(20, rounds / 4); i++) await path.round(); // warm-up (and the JIT)
  await session.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
  let frames = 0;
  for (let i = 0; i < rounds; i++) frames += await path.round();
  const { profile } = await session.post('HeapProfiler.stopSampling');
  const { bytes, sites } = vunetShare(profile.head);
  process.stdout.write(`${path.name.padEnd(24)} ${String(frames).padStart(7)} frames  ${(bytes / Math.max(1, frames)).toFixed(1).padStart(7)} B/frame\n`);
  for (const [site, n] of [...sites].sort((a, b) => b[1] - a[1]).slice(0, 4)) {
    process.stdout.write(`    ${(n / Math.max(1, frames)).toFixed(1).padStart(6)}  ${site}\n`);
  }
}

/** What vunet sent the guest (h.receive), with its ARP requests answered as a guest would: a
 *  neighbour entry that goes stale is probed, and queued packets would be copies. */
async function receive(h: Harness, min: number, ms: number): Promise<Uint8Array[]> {
  const frames = await h.receive(min, ms);
  for (const f of frames) if (f[12] === 0x08 && f[13] === 0x06 && f[21] === 1) h.send(arpReply());
  return frames;
}

/** Frames vunet sent within `ms` (at least one); `seen` gets those of the connection to `port`. */
async function collectTcp(h: Harness, port: number, ms: number, seen: (f: ReturnType<typeof parseIpv4Frame>) => void): Promise<number> {
  let n = 0;
  for (const f of await receive(h, 1, ms)) {
    n++;
    if (f[12] !== 0x08 || f[13] !== 0x00 || f[23] !== 6) continue;
    const p = parseIpv4Frame(f);
    if (p.tcp.srcPort === port) seen(p);
  }
  return n;
}

/** A guest connection to the host's `port` (through the gateway): returns vunet's ISN. */
async function connect(h: Harness, guestPort: number, port: number, iss: number): Promise<number> {
  const syn = new TcpOptions();
  syn.mss = 1460;
  syn.sackPermitted = true;
  h.send(tcpFrame(guestPort, port, iss, 0, SYN, undefined, { options: syn }));
  let theirs = -1;
  for (let i = 0; i < 50 && theirs < 0; i++) {
    await collectTcp(h, port, 100, (p) => {
      if (p.tcp.syn) theirs = p.tcp.seq;
    });
  }
  if (theirs < 0) throw new Error('no SYN-ACK from vunet');
  h.send(tcpFrame(guestPort, port, iss + 1, theirs + 1, ACK));
  return theirs;
}

async function tcpOut(h: Harness, name: string, guestPort: number, offloads: boolean): Promise<DataPath> {
  let received = 0;
  const server = net.createServer((s) => {
    s.on('data', (d) => (received += d.length));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const iss = 1000;
  const theirs = await connect(h, guestPort, port, iss);
  const payload = new Uint8Array(MSS).fill(0x5a);
  // With offloads: NEEDS_CSUM from the TCP header on (the payload stays in guest memory until the
  // writev); without, the device verifies and joins the segments.
  const header = new Uint8Array(12);
  if (offloads) {
    header[0] = 1;
    header[6] = 34;
    header[8] = 16;
  }
  let seq = iss + 1;
  return {
    name,
    async round() {
      const target = received + BATCH * MSS;
      for (let i = 0; i < BATCH; i++, seq += MSS) h.send(tcpFrame(guestPort, port, seq, theirs + 1, ACK, payload), header);
      let frames = BATCH;
      for (let i = 0; i < 100 && received < target; i++) frames += await collectTcp(h, port, 5, () => undefined);
      frames += await collectTcp(h, port, 1, () => undefined); // its ACKs
      return frames;
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string' } } });
  const rounds = Number(values.rounds ?? 200);
  const h = await startHarness();
  const session = new Session();
  session.connect();
  try {
    h.send(arpRequest(GW_IP));
    h.send(arpReply());
    await receive(h, 1, 300);

    const udpServer = dgram.createSocket('udp4');
    udpServer.on('message', (m, r) => udpServer.send(m, r.port, r.address));
    await new Promise<void>((r) => udpServer.bind(0, '127.0.0.1', () => r()));
    const data = new Uint8Array(1000).fill(7);
    const datagram = udpFrame(40000, udpServer.address().port, data);
    const exchange = (make: (i: number) => Uint8Array) => async (): Promise<number> => {
      for (let i = 0; i < BATCH; i++) h.send(make(i));
      return BATCH + (await receive(h, BATCH, 200)).length;
    };
    let seq = 0;
    // Each made when its turn comes: a connection left meanwhile would have its frames taken by
    // the other paths' rounds, and back off.
    const paths: (() => Promise<DataPath>)[] = [
      () => Promise.resolve({ name: 'udp4 both ways', round: exchange(() => datagram) }),
      () => Promise.resolve({ name: 'echo4 via the host', round: exchange(() => echoRequest(0x1234, seq++ & 0xffff, data)) }),
      () => Promise.resolve({ name: 'echo4 answered by us', round: exchange(() => echoRequest(0x1235, seq++ & 0xffff, data, { dst: DNS_IP })) }),
      () => tcpOut(h, 'tcp4 guest→host joined', 41000, false),
      () => tcpOut(h, 'tcp4 guest→host in place', 41001, true),
    ];
    process.stdout.write(`vunet's allocations per frame on the guest link, ${rounds} rounds of ${BATCH} guest frames per path\n`);
    for (const make of paths) await measure(session, await make(), rounds);
    udpServer.close();
  } finally {
    session.disconnect();
    await h.close();
  }
  process.exit(0); // (the TCP servers)
}

await main();
