// A capture as Wireshark reads it: DHCP, ping, TCP and UDP frames, the TCP and UDP ones recorded
// with the partial checksums of checksum offload (as vunet records a guest's NEEDS_CSUM frames),
// are decoded by tshark with checksum validation on, and every checksum is good; timestamps keep
// their microseconds.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { PcapWriter } from '../../src/main/pcap.js';
import type { PartialChecksum } from '../../src/iface/link.js';
import { IpProtocol, pseudoHeaderSumV4 } from '../../src/wire/index.js';
import { GUEST_IP, GW_IP, dhcpDiscover, echoRequest, tcpFrame, udpFrame } from '../support/packets.js';

const run = promisify(execFile);
const tshark = await run('which', ['tshark']).then(
  (r) => r.stdout.trim(),
  () => '',
);

/** The frame as checksum offload leaves it: the transport checksum field holds only the
 *  pseudo-header sum (NEEDS_CSUM), and where it starts. */
function partialOf(whole: Uint8Array, proto: number, checksumOffset: number): { frame: Uint8Array; partial: PartialChecksum } {
  const f = whole.slice();
  const ip = 14;
  const l4 = ip + (f[ip]! & 15) * 4;
  const src = (f[ip + 12]! << 24) | (f[ip + 13]! << 16) | (f[ip + 14]! << 8) | f[ip + 15]!;
  const dst = (f[ip + 16]! << 24) | (f[ip + 17]! << 16) | (f[ip + 18]! << 8) | f[ip + 19]!;
  const sum = pseudoHeaderSumV4(src >>> 0, dst >>> 0, proto, f.length - l4);
  f[l4 + checksumOffset] = sum >> 8;
  f[l4 + checksumOffset + 1] = sum & 0xff;
  return { frame: f, partial: { start: l4, offset: checksumOffset } };
}

if (tshark === '') {
  t.skip('tshark validates the checksums of a capture (tshark is not installed: apt-get install tshark)', async () => {});
} else {
  t.test('tshark validates every checksum of a capture of DHCP, ping, TCP and UDP; timestamps in microseconds', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'vunet-pcap-tshark-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'capture.pcap');
    const w = await PcapWriter.open(path);
    const payload = Uint8Array.from({ length: 1200 }, (_, i) => (i * 7 + 1) & 0xff);
    const tcp = partialOf(tcpFrame(40000, 80, 1000, 2000, 0x18, payload, { src: GUEST_IP, dst: GW_IP }), IpProtocol.TCP, 16);
    const udp = partialOf(udpFrame(40001, 5001, payload.subarray(0, 333), { src: GUEST_IP, dst: GW_IP }), IpProtocol.UDP, 6);
    const frames: [Uint8Array, PartialChecksum | undefined][] = [
      [dhcpDiscover(), undefined],
      [echoRequest(7, 1, payload.subarray(0, 56), { src: GUEST_IP, dst: GW_IP }), undefined],
      [tcp.frame, tcp.partial],
      [udp.frame, udp.partial],
    ];
    const base = 1_764_900_000_000;
    frames.forEach(([f, partial], i) => t.ok(w.record(f, base + i + 0.125 * (i + 1), partial)));
    await w.close();
    const checks = ['ip', 'tcp', 'udp'].flatMap((p) => ['-o', `${p}.check_checksum:TRUE`]);
    const fields = ['frame.time_epoch', 'frame.protocols', 'ip.checksum.status', 'icmp.checksum.status', 'tcp.checksum.status', 'udp.checksum.status'];
    const { stdout } = await run(tshark, ['-r', path, ...checks, '-T', 'fields', '-E', 'occurrence=f', ...fields.flatMap((f) => ['-e', f])], {
      env: { ...process.env, HOME: dir },
    });
    const rows = stdout
      .trim()
      .split('\n')
      .map((line) => line.split('\t'));
    t.equal(rows.length, 4, 'four frames decoded');
    const protos = rows.map((r) => r[1]!);
    t.match(protos[0], /dhcp/, 'DHCP decoded');
    t.match(protos[1], /icmp/, 'ICMP decoded');
    t.match(protos[2], /tcp/, 'TCP decoded');
    t.match(protos[3], /udp/, 'UDP decoded');
    // Wireshark's checksum status: 1 good, 0 bad, 2 unverified (validation off).
    rows.forEach((r, i) => {
      const statuses = r.slice(2).filter((s) => s !== '');
      t.ok(statuses.length >= 2, `frame ${i}: IP and its transport checked`);
      t.same(
        statuses,
        statuses.map(() => '1'),
        `frame ${i}: every checksum good`,
      );
    });
    // (Read as text: a double holds the epoch to about a microsecond only.)
    const micros = rows.map((r) => Number((r[0]!.split('.')[1] ?? '').padEnd(6, '0').slice(0, 6)));
    t.same(
      micros,
      [0, 1, 2, 3].map((i) => i * 1000 + 125 * (i + 1)),
      'timestamps to the microsecond',
    );
  });
}
