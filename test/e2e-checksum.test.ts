// End to end, checksums: a real guest moves 8 MB each way over TCP through the NAT twice.
// - Without checksum offload (QEMU csum=off, guest_csum=off): vunet writes every checksum whole
//   (the native sum) and the guest's kernel verifies them; the guest sends whole checksums and
//   vunet verifies them. A wrong checksum either way would stall the transfer.
// - With offload (the default): frames to the guest carry partial checksums (NEEDS_CSUM), the
//   guest's arrive partial too, and the --pcap capture must still hold only complete, correct
//   checksums in both directions.
// - At MTU 1500 with segmentation offload both ways: the guest hands over segments larger than
//   the MTU, which vunet takes whole (HOST_TSO4), and gets 64 KiB segments it cuts itself
//   (GUEST_TSO4).
// - At MTU 1500 without offloads: the guest's MTU-sized segments are joined before the stack
//   (src/virtio/tcp-coalescer.ts), and vunet cuts its own large segments into frames with whole
//   checksums (sendCut); the bytes must still arrive intact.
// - At MTU 1500 with checksum offload but no GUEST_TSO: the frames cut from large segments go with
//   partial checksums, which the guest's kernel completes.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { IpProtocol, Ipv4Packet, TcpSegment, UdpDatagram } from '../src/wire/index.js';
import { blob } from './support/blob.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';
import { readPcap } from './support/pcap-read.js';

const why = canUseNetns();
const SIZE = 8 << 20;

/** Checks every IPv4 TCP/UDP checksum in a capture: [verified, wrong]. */
function verifyCapture(frames: Uint8Array[]): [number, number] {
  let ok = 0;
  let bad = 0;
  const ip = new Ipv4Packet();
  for (const f of frames) {
    if (f.length < 34 || f[12] !== 0x08 || f[13] !== 0x00) continue;
    ip.at(f, 14, f.length - 14);
    if (!ip.check() || ip.moreFragments || ip.fragOffset !== 0) continue;
    let good: boolean;
    if (ip.protocol === IpProtocol.TCP) good = new TcpSegment().at(f, ip.payloadOffset, ip.payloadLength).verifyChecksumV4(ip.src, ip.dst);
    else if (ip.protocol === IpProtocol.UDP) {
      const u = new UdpDatagram().at(f, ip.payloadOffset, ip.payloadLength);
      if (u.checksum === 0) continue;
      good = u.verifyChecksumV4(ip.src, ip.dst);
    } else continue;
    if (good) ok++;
    else bad++;
  }
  return [ok, bad];
}

type Mode = 'no-offload' | 'offload' | 'tso-1500' | 'no-offload-1500' | 'cut-1500';

async function transfer(t: Test, mode: Mode): Promise<void> {
  const offload = mode !== 'no-offload' && mode !== 'no-offload-1500';
  const topo = createTopology(mode);
  const dir = mkdtempSync(join(tmpdir(), 'vunet-csum-'));
  const data = blob(SIZE);
  writeFileSync(join(dir, 'blob'), data);
  const sha = createHash('sha256').update(data).digest('hex');
  const inTarget = (...cmd: string[]) => spawn('ip', ['netns', 'exec', topo.targetNs, ...cmd], { stdio: 'ignore' });
  const services = [
    inTarget(process.execPath, join(import.meta.dirname, 'support', 'http-file.mjs'), join(dir, 'blob'), '8080'),
    inTarget('socat', '-u', 'TCP4-LISTEN:9000,reuseaddr', `CREATE:${join(dir, 'up')}`),
  ];
  const pcap = join(dir, 'cap.pcap');
  const extra = mode === 'offload' ? ['--pcap', pcap] : mode === 'tso-1500' || mode === 'no-offload-1500' || mode === 'cut-1500' ? ['--mtu', '1500'] : [];
  const v = await spawnVunet(topo.vunetNs, ['--socket', join(dir, 'vunet.sock'), '--log-level', 'info', '--dns', topo.target4, ...extra]);
  t.teardown(() => {
    for (const s of services) s.kill('SIGTERM');
    v.proc.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
echo "== features $(cat /sys/class/net/eth0/device/features)"
echo "== down"; timeout 120 wget -q -O /tmp/b http://${topo.target4}:8080/blob; sha256sum /tmp/b
echo "== up"; timeout 120 socat -u FILE:/tmp/b TCP4:${topo.target4}:9000; echo "rc $?"
echo "== end"
`;
  const guest = await startGuest({
    socketPath: join(dir, 'vunet.sock'),
    script,
    memoryMiB: 512,
    timeoutMs: 300_000,
    guestTimeoutSec: 280,
    ...(offload ? {} : { deviceOptions: ['csum=off', 'guest_csum=off'] }),
    ...(mode === 'cut-1500' ? { deviceOptions: ['guest_tso4=off', 'guest_tso6=off'] } : {}),
  });
  const exit = await guest.exited;
  const out = guest.output;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  const features = /== features ([01]+)/.exec(out)?.[1] ?? '';
  t.equal(features.slice(0, 2), offload ? '11' : '00', `CSUM and GUEST_CSUM ${offload ? 'negotiated' : 'off'} (features ${features.slice(0, 2)})`);
  t.match(out.split('== down')[1] ?? '', new RegExp(sha), 'host → guest: 8 MB arrived intact (the guest kernel took our checksums)');
  t.match(out.split('== up')[1] ?? '', /rc 0/, 'guest → host: sent');
  // The receiving socat has written the file once it exits (after the guest's EOF).
  const receiver = services[1]!;
  if (receiver.exitCode === null && receiver.signalCode === null) {
    await Promise.race([new Promise((r) => receiver.once('exit', r)), new Promise((r) => setTimeout(r, 10_000))]);
  }
  const up = readFileSync(join(dir, 'up'));
  t.equal(createHash('sha256').update(up).digest('hex'), sha, "guest → host: 8 MB arrived intact (vunet took the guest's checksums)");
  if (mode === 'tso-1500') {
    t.match(out, /== features/, 'booted');
    const status = await v.status();
    const device = (JSON.parse(status ?? '{}') as { device?: { txGso?: number; txGsoBad?: number; rxGso?: number } }).device;
    t.ok((device?.txGso ?? 0) > 100, `the guest sent segments larger than the MTU: ${device?.txGso}`);
    t.equal(device?.txGsoBad, 0, 'none refused');
    t.ok((device?.rxGso ?? 0) > 100, `the guest got segments larger than the MTU: ${device?.rxGso}`);
  }
  if (mode === 'no-offload-1500' || mode === 'cut-1500') {
    const status = await v.status();
    const device = (JSON.parse(status ?? '{}') as { device?: { txCoalesced?: number; txFrames?: number; rxCut?: number; rxGso?: number } }).device;
    if (mode === 'no-offload-1500')
      t.ok((device?.txCoalesced ?? 0) > 1000, `the guest's segments were joined before the stack: ${device?.txCoalesced} of ${device?.txFrames} frames`);
    t.ok((device?.rxCut ?? 0) > 50, `segments larger than the MTU were cut into frames for the guest: ${device?.rxCut}`);
    t.equal(device?.rxGso ?? 0, 0, 'no GSO frame to a guest that did not take them');
  }
  if (mode === 'offload') {
    v.proc.kill('SIGTERM');
    await v.exited;
    const [ok, bad] = verifyCapture(readPcap(pcap));
    t.ok(ok > 100, `the capture's TCP/UDP checksums verified: ${ok}`);
    t.equal(bad, 0, 'none wrong (partial checksums completed in the capture)');
  }
}

t.test('without checksum offload: whole checksums both ways', { skip: why ?? false }, (t) => transfer(t, 'no-offload'));
t.test('with checksum offload: partial checksums, and the capture holds complete ones', { skip: why ?? false }, (t) => transfer(t, 'offload'));
t.test('MTU 1500 with segmentation offload both ways: segments larger than the MTU', { skip: why ?? false }, (t) => transfer(t, 'tso-1500'));
t.test('MTU 1500 without offloads: whole checksums, the guest segments joined before the stack', { skip: why ?? false }, (t) => transfer(t, 'no-offload-1500'));
t.test('MTU 1500, checksum offload without GUEST_TSO: large segments cut into frames with partial checksums', { skip: why ?? false }, (t) =>
  transfer(t, 'cut-1500'),
);
