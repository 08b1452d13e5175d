// End to end, the fences: a real guest sends TCP SYNs, UDP datagrams and pings straight out of its
// NIC (raw frames, as a hostile guest would: its own kernel keeps 127/8, ::1 and the unspecified
// addresses to itself) to the host's loopback (127.0.0.1, ::1), the unspecified addresses (0.0.0.0,
// ::) and the host's own addresses. With --no-map-gw none of the first reach the host: the SYNs get
// RSTs, the datagrams and pings "communication administratively prohibited"; the host's addresses
// answer as under slirp — until --deny-host fences them too. A service listening on every address
// of vunet's namespace reports every connection and datagram that got through.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import t from 'tap';
import type { Test } from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { Icmpv4Packet, Icmpv6Packet, IpProtocol, Ipv4Packet, Ipv6Packet, TcpFlags, TcpSegment, UdpDatagram } from '../src/wire/index.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';
import { GUEST_IP, echoRequest, echoRequest6, tcpFrame, tcpFrame6, udpFrame, udpFrame6 } from './support/packets.js';
import { readPcap } from './support/pcap-read.js';
import { until } from './support/wait.js';

const why = canUseNetns();
const PORT = 7000; // TCP; UDP on 7001
/** The guest's SLAAC address: EUI-64 from QEMU's default MAC 52:54:00:12:34:56 in fec0::/64. */
const GUEST6 = 'fec0::5054:ff:fe12:3456';

type Kind = 'tcp' | 'udp' | 'ping';
interface Probe {
  kind: Kind;
  dst: string;
  /** TCP or UDP source port, or the echo identifier: how the answer is matched. */
  tag: number;
  frame: Uint8Array;
}

const bytes = (a: string): Uint8Array => Uint8Array.from(ipaddr.parse(a).toByteArray());

function probes(dsts: string[]): Probe[] {
  const out: Probe[] = [];
  const src6 = bytes(GUEST6);
  dsts.forEach((dst, i) => {
    const v6 = dst.includes(':');
    const d = bytes(dst);
    const d4 = v6 ? 0 : ((d[0]! << 24) | (d[1]! << 16) | (d[2]! << 8) | d[3]!) >>> 0;
    const data = new TextEncoder().encode(`probe-${i}`);
    const p6 = { src: src6, dst: d };
    out.push({
      kind: 'tcp',
      dst,
      tag: 41000 + i,
      frame: v6
        ? tcpFrame6(41000 + i, PORT, 1000, 0, TcpFlags.SYN, { ...p6, mss: 1400 })
        : tcpFrame(41000 + i, PORT, 1000, 0, TcpFlags.SYN, undefined, { dst: d4, mss: 1400 }),
    });
    out.push({ kind: 'udp', dst, tag: 42000 + i, frame: v6 ? udpFrame6(42000 + i, PORT + 1, data, p6) : udpFrame(42000 + i, PORT + 1, data, { dst: d4 }) });
    out.push({ kind: 'ping', dst, tag: 0x4100 + i, frame: v6 ? echoRequest6(0x4100 + i, 1, data, p6) : echoRequest(0x4100 + i, 1, data, { dst: d4 }) });
  });
  return out;
}

type Answer = 'rst' | 'synack' | 'prohibited' | 'reply' | 'other-icmp';

/** What the guest got back for each probe, from vunet's capture (frames toward the guest). */
function answers(frames: Uint8Array[], list: Probe[]): Map<Probe, Answer[]> {
  const out = new Map<Probe, Answer[]>(list.map((p) => [p, []]));
  const add = (kind: Kind, tag: number, a: Answer): void => {
    for (const p of list) if (p.kind === kind && p.tag === tag) out.get(p)!.push(a);
  };
  for (const f of frames) {
    if (f[0] !== 0x52 || f[1] !== 0x54) continue; // only what went to the guest (52:54:00:...)
    const type = (f[12]! << 8) | f[13]!;
    if (type === 0x0800) {
      const ip = new Ipv4Packet().at(f, 14, f.length - 14);
      if (ip.dst !== GUEST_IP) continue;
      if (ip.protocol === IpProtocol.TCP) {
        const s = new TcpSegment().at(f, ip.payloadOffset, ip.payloadLength);
        add('tcp', s.dstPort, (s.flags & TcpFlags.RST) !== 0 ? 'rst' : (s.flags & TcpFlags.SYN) !== 0 ? 'synack' : 'rst');
      } else if (ip.protocol === IpProtocol.UDP) {
        add('udp', new UdpDatagram().at(f, ip.payloadOffset, ip.payloadLength).dstPort, 'reply');
      } else if (ip.protocol === IpProtocol.ICMP) {
        const icmp = new Icmpv4Packet().at(f, ip.payloadOffset, ip.payloadLength);
        if (icmp.type === 0) add('ping', icmp.ident, 'reply');
        else {
          // An error quotes the probe: IP header, then 8 bytes of it (ports, or the identifier).
          const q = icmp.payloadOffset;
          const qp = q + (f[q]! & 0x0f) * 4;
          const a = icmp.type === 3 && icmp.code === 13 ? 'prohibited' : 'other-icmp';
          if (f[q + 9] === IpProtocol.ICMP) add('ping', (f[qp + 4]! << 8) | f[qp + 5]!, a);
          else add(f[q + 9] === IpProtocol.UDP ? 'udp' : 'tcp', (f[qp]! << 8) | f[qp + 1]!, a);
        }
      }
    } else if (type === 0x86dd) {
      const ip = new Ipv6Packet().at(f, 14, f.length - 14);
      const nh = ip.nextHeader;
      const off = 54;
      if (nh === IpProtocol.TCP) {
        const s = new TcpSegment().at(f, off, f.length - off);
        add('tcp', s.dstPort, (s.flags & TcpFlags.RST) !== 0 ? 'rst' : (s.flags & TcpFlags.SYN) !== 0 ? 'synack' : 'rst');
      } else if (nh === IpProtocol.UDP) {
        add('udp', new UdpDatagram().at(f, off, f.length - off).dstPort, 'reply');
      } else if (nh === IpProtocol.ICMPV6) {
        const icmp = new Icmpv6Packet().at(f, off, f.length - off);
        if (icmp.type === 129) add('ping', (f[off + 4]! << 8) | f[off + 5]!, 'reply');
        else if (icmp.type < 128) {
          const q = off + 8; // the quoted IPv6 header, then 8 bytes of its payload
          const a = icmp.type === 1 && icmp.code === 1 ? 'prohibited' : 'other-icmp';
          const qnh = f[q + 6];
          const qp = q + 40;
          if (qnh === IpProtocol.ICMPV6) add('ping', (f[qp + 4]! << 8) | f[qp + 5]!, a);
          else add(qnh === IpProtocol.UDP ? 'udp' : 'tcp', (f[qp]! << 8) | f[qp + 1]!, a);
        }
      }
    }
  }
  return out;
}

/** Boots the guest, sends the probes one frame at a time, returns the capture and what got through. */
async function run(t: Test, tag: string, extraArgs: string[], dsts: string[]) {
  const topo = createTopology(tag);
  const dir = mkdtempSync(join(tmpdir(), 'vunet-fence-'));
  const sock = join(dir, 'vunet.sock');
  const pcap = join(dir, 'cap.pcap');
  let hits = '';
  const counter: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', topo.vunetNs, process.execPath, join(import.meta.dirname, 'support', 'hit-counter.mjs'), String(PORT)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  counter.stdout!.on('data', (d: Buffer) => (hits += d.toString()));
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    counter.kill('SIGTERM');
    vunet?.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  await until(() => hits.includes('ready'), 'the host service', 5000).catch(() => undefined);
  t.match(hits, /ready/, 'the host service listens');
  const v = await spawnVunet(topo.vunetNs, ['--socket', sock, '--log-level', 'info', '--pcap', pcap, '--no-map-gw', ...extraArgs]);
  vunet = v.proc;
  const list = probes(dsts);
  const extraFiles: Record<string, Buffer> = {};
  list.forEach((p, i) => (extraFiles[`probe/${i}`] = Buffer.from(p.frame)));
  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
i=0; while [ $i -lt 80 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
ip -6 addr show dev eth0 | grep -o 'inet6 fec0[^ ]*'
ping -c 1 -W 2 10.0.2.2 >/dev/null 2>&1
ping6 -c 1 -W 2 fec0::2 >/dev/null 2>&1
i=0; while [ $i -lt ${list.length} ]; do socat -u OPEN:/probe/$i INTERFACE:eth0; sleep 0.2; i=$((i+1)); done
sleep 3
echo "== end"
`;
  const guest = await startGuest({ socketPath: sock, script, extraFiles, memoryMiB: 256, timeoutMs: 180_000, guestTimeoutSec: 150 });
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(guest.output, new RegExp(`inet6 ${GUEST6}/64`), 'the guest has the SLAAC address the probes come from');
  await v.status();
  v.proc.kill('SIGTERM');
  await v.exited;
  return { list, got: answers(readPcap(pcap), list), hits, log: v.log() };
}

const LOCAL = ['127.0.0.1', '0.0.0.0', '::1', '::'];
const HOST = ['10.201.1.2', 'fd00:201:1::2'];

t.test(
  "fences, --no-map-gw: host loopback and the unspecified addresses are never reached; the host's addresses are, as under slirp",
  { skip: why ?? false },
  async (t) => {
    const { list, got, hits, log } = await run(t, 'fence', [], [...LOCAL, ...HOST]);
    for (const p of list) {
      const a = got.get(p)!;
      if (LOCAL.includes(p.dst)) {
        t.same(a, [p.kind === 'tcp' ? 'rst' : 'prohibited'], `${p.kind} to ${p.dst}: ${p.kind === 'tcp' ? 'RST' : 'administratively prohibited'}`);
      } else {
        t.same(a, [p.kind === 'tcp' ? 'synack' : 'reply'], `${p.kind} to ${p.dst}: answered by the host (slirp's behaviour)`);
      }
    }
    for (const d of LOCAL) t.notMatch(hits, new RegExp(`^(tcp|udp) (::ffff:)?${d.replace(/\./g, '\\.')}$`, 'm'), `nothing reached the host from ${d}`);
    t.match(hits, /^tcp (::ffff:)?10\.201\.1\.2$/m, 'the host-address connection got through');
    t.match(log, /"fence":\{"loopback":6,"unspecified":6/, 'counted by reason in the status');
  },
);

t.test("fences, --no-map-gw --deny-host: the host's own addresses are fenced too", { skip: why ?? false }, async (t) => {
  const { list, got, hits } = await run(t, 'denyhost', ['--deny-host'], [...LOCAL, ...HOST]);
  for (const p of list) t.same(got.get(p), [p.kind === 'tcp' ? 'rst' : 'prohibited'], `${p.kind} to ${p.dst}: refused`);
  t.notMatch(hits, /^(tcp|udp) /m, 'nothing reached any host service');
});
