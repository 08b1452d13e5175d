// End to end, TCP through the NAT, in the namespace topology of test/support/netns.ts: a real
// guest fetches a 16 MB file over HTTP from the target on both families (checksums match), echoes
// over TCP, is refused at once by a closed port, gets "No route to host" for an address on
// vunet's host link that no one holds, downloads through a reader that stalls (its window closes
// mid-transfer and reopens), runs 200 connections at once, iperf3 both ways (TCP, and UDP at
// 50 Mbit/s on both families), and `traceroute -T` and `mtr -T` list the gateway, both routers and
// the target. A host client reaches a server in the guest through a port forward, data going both
// ways, and a UDP datagram through a -u forward comes back.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { blob } from './support/blob.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';

const why = canUseNetns();

t.test('TCP through the NAT: HTTP, echo, refused, no route, 200 connections, iperf3, traceroute -T, port forward', { skip: why ?? false }, async (t) => {
  const topo = createTopology('tcp');
  const dir = mkdtempSync(join(tmpdir(), 'vunet-tcp-'));
  const file = join(dir, 'blob');
  const data = blob(16 << 20);
  writeFileSync(file, data);
  const sha = createHash('sha256').update(data).digest('hex');
  const inTarget = (...cmd: string[]) => spawn('ip', ['netns', 'exec', topo.targetNs, ...cmd], { stdio: 'ignore' });
  const services = [
    inTarget(process.execPath, join(import.meta.dirname, 'support', 'http-file.mjs'), file, '8080'),
    inTarget('socat', 'TCP4-LISTEN:7,fork,reuseaddr', 'PIPE'),
    inTarget('socat', 'TCP6-LISTEN:7,fork,reuseaddr,ipv6only=1', 'PIPE'),
    inTarget('iperf3', '-s', '-p', '5201'),
    // Uploads: what arrives is hashed into a file per family.
    inTarget('socat', '-u', 'TCP4-LISTEN:9001,reuseaddr', `SYSTEM:sha256sum > ${join(dir, 'up4')}`),
    inTarget('socat', '-u', 'TCP6-LISTEN:9001,reuseaddr,ipv6only=1', `SYSTEM:sha256sum > ${join(dir, 'up6')}`),
  ];
  const sock = join(dir, 'vunet.sock');
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    for (const s of services) s.kill('SIGTERM');
    vunet?.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const v = await spawnVunet(topo.vunetNs, [
    '--socket',
    sock,
    '--log-level',
    'info',
    '--dns',
    topo.target4,
    '-t',
    '15000:5000',
    '-t',
    '15001:5001',
    '-u',
    '15002:5002',
  ]);
  vunet = v.proc;

  const t4 = topo.target4;
  const t6 = topo.target6;
  const elapsed = (name: string, cmd: string): string =>
    `echo "== ${name}"; a=$(cut -d' ' -f1 /proc/uptime); ${cmd} </dev/null 2>&1; b=$(cut -d' ' -f1 /proc/uptime); echo "elapsed $a $b"`;
  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
# The SLAAC address, out of DAD (a tentative source cannot send yet).
i=0; while [ $i -lt 80 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
echo "== http4"; timeout 120 wget -q -O - http://${t4}:8080/blob | sha256sum
echo "== http6"; timeout 120 wget -q -O - 'http://[${t6}]:8080/blob' | sha256sum
echo "== zerowin4"; timeout 120 wget -q -O - http://${t4}:8080/blob | (sleep 5; sha256sum)
echo "== upload"; timeout 120 wget -q -O /tmp/blob http://${t4}:8080/blob && timeout 120 socat -u FILE:/tmp/blob TCP4:${t4}:9001 && timeout 120 socat -u FILE:/tmp/blob TCP6:[${t6}]:9001; echo "upload rc $?"; rm -f /tmp/blob
echo "== echo4"; echo hello-tcp4 | socat -t 5 - TCP4:${t4}:7 2>&1
echo "== echo6"; echo hello-tcp6 | socat -t 5 - TCP6:[${t6}]:7 2>&1
${elapsed('refused4', `socat - TCP4:${t4}:9`)}
${elapsed('refused6', `socat - TCP6:[${t6}]:9`)}
echo "== noroute4"; socat - TCP4:${topo.nobody4}:80 </dev/null 2>&1
echo "== noroute6"; socat - TCP6:[${topo.nobody6}]:80 </dev/null 2>&1
echo "== many"
i=0; while [ $i -lt 200 ]; do echo "c$i" | socat -t 30 - TCP4:${t4}:7 >/tmp/m$i 2>&1 & i=$((i+1)); done; wait
cat /tmp/m* | grep -c '^c[0-9]'
# iperf3 within a time limit: a run that does not end says so ("error", and its summary then
# comes from the interrupt, so it is no proof of completion), with the guest's TCP sockets (their
# queues tell a stalled transfer from an iperf3 that hangs on its own), and the rest goes on.
perf() { name=$1; shift; echo "== $name"; timeout 60 iperf3 "$@" >/tmp/iperf.out 2>&1; rc=$?; grep -E 'sender|receiver|error' /tmp/iperf.out; [ $rc -eq 0 ] || { echo "error: iperf3 exited $rc; last lines:"; tail -n 5 /tmp/iperf.out; cat /proc/net/tcp /proc/net/tcp6; echo "rx_packets $(cat /sys/class/net/eth0/statistics/rx_packets)"; dmesg | tail -n 10; }; }
perf iperf-up -c ${t4} -p 5201 -t 3
perf iperf-down -c ${t4} -p 5201 -t 3 -R
perf iperf-udp -c ${t4} -p 5201 -u -b 50M -t 2
perf iperf-udp6 -6 -c ${t6} -p 5201 -u -b 50M -t 2 -R
echo "== traceT4"; traceroute -T -n -q 1 -w 2 -m 8 -p 7 ${t4} 2>&1
echo "== traceT6"; traceroute -6 -T -n -q 1 -w 2 -m 8 -p 7 ${t6} 2>&1
echo "== mtrtcp4"; mtr -r -n -T -P 7 -c 3 -i 0.2 ${t4} 2>&1
echo "== mtrtcp6"; mtr -6 -r -n -T -P 7 -c 3 -i 0.2 ${t6} 2>&1
socat TCP6-LISTEN:5000,fork,reuseaddr,ipv6only=0 PIPE &
socat UDP6-RECVFROM:5002,fork,ipv6only=0 PIPE &
i=0; while [ $i -lt 100 ]; do n=$(netstat -ltun | grep -c -E ':500[02] '); [ "$n" -ge 2 ] && break; sleep 0.1; i=$((i+1)); done
echo "== fwd-ready"
socat -u TCP6-LISTEN:5001,ipv6only=0 - 2>&1
echo "== end"
`;
  const guest = await startGuest({ socketPath: sock, script, memoryMiB: 512, timeoutMs: 420_000, guestTimeoutSec: 380 });
  // An iperf3 that fails: vunet's status at once, while the guest's queues are there to show.
  let troubled: Promise<string> | undefined;
  guest
    .waitFor(/^error: iperf3/m, 420_000)
    .then(() => (troubled = v.status().catch((e: unknown) => String(e))))
    .catch(() => {});

  // The port forward, from a host client in vunet's namespace, once the guest listens.
  await guest.waitFor(/== fwd-ready/, 400_000); // printed once the guest's socats listen
  const client = (target: string, input: Buffer): Buffer =>
    spawnSync('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-t', '10', '-', target], { input, timeout: 60_000 }).stdout;
  const small = Buffer.from('hello-forward\n');
  t.same(client('TCP4:127.0.0.1:15000', small), small, 'port forward over IPv4 loopback: data to the guest and back');
  t.same(client('TCP6:[::1]:15000', small), small, 'port forward over IPv6 loopback: data to the guest and back');
  const bulk = blob(1 << 20);
  const back = client('TCP4:127.0.0.1:15000', bulk);
  t.equal(back.length, bulk.length, '1 MiB through the forward and back');
  t.ok(back.equals(bulk), 'the bytes match');
  const dgram = Buffer.from('hello-udp-forward\n');
  t.same(client('UDP4:127.0.0.1:15002', dgram), dgram, 'UDP port forward: datagram to the guest and its answer back');
  client('TCP4:127.0.0.1:15001', Buffer.from('done\n'));

  const exit = await guest.exited;
  const out = guest.output;
  const section = (name: string): string => out.split(`== ${name}`)[1]?.split('== ')[0] ?? '';
  if (!t.equal(exit.guestStatus, 0, 'guest script ran to its end') || troubled !== undefined) {
    // What vunet saw, for a run that fails where it cannot be rerun (CI): its status as an iperf3
    // failed (its queues' rings then), and the lines it logged other than status lines.
    t.comment(`vunet status as iperf3 failed: ${await (troubled ?? Promise.resolve('(none failed)'))}`);
    t.comment(
      `vunet log (last 30 lines):\n${v
        .log()
        .split('\n')
        .filter((l) => !l.includes('"msg":"status"'))
        .slice(-30)
        .join('\n')}`,
    );
  }
  t.match(section('http4'), new RegExp(sha), '16 MiB over HTTP on IPv4: checksum matches');
  t.match(section('http6'), new RegExp(sha), '16 MiB over HTTP on IPv6: checksum matches');
  t.match(section('zerowin4'), new RegExp(sha), 'a reader that stalls 5 s mid-transfer (the guest closes its window): checksum matches');
  t.match(section('upload'), /upload rc 0/, 'the guest uploaded 16 MiB on each family');
  for (const fam of ['4', '6']) {
    let got = '';
    for (let i = 0; i < 50 && !got.includes(sha); i++) {
      got = existsSync(join(dir, `up${fam}`)) ? readFileSync(join(dir, `up${fam}`), 'utf8') : '';
      if (!got.includes(sha)) await new Promise((r) => setTimeout(r, 100));
    }
    t.match(got, new RegExp(sha), `16 MiB from the guest over IPv${fam} (its payload written from guest memory): checksum matches`);
  }
  t.match(section('echo4'), /hello-tcp4/, 'TCP echo over IPv4');
  t.match(section('echo6'), /hello-tcp6/, 'TCP echo over IPv6');
  for (const fam of ['4', '6']) {
    const s = section(`refused${fam}`);
    t.match(s, /Connection refused/, `closed port refused (IPv${fam})`);
    const m = /elapsed ([\d.]+) ([\d.]+)/.exec(s);
    t.ok(m && Number(m[2]) - Number(m[1]) < 2, `refused at once (IPv${fam}): ${m?.[0] ?? 'no timing'}`);
  }
  t.match(section('noroute4'), /No route to host/, 'unheld address on the host link: No route to host (IPv4)');
  t.match(section('noroute6'), /No route to host/, 'unheld address on the host link: No route to host (IPv6)');
  t.match(section('many'), /^\s*200\s*$/m, '200 concurrent connections completed');
  t.match(section('iperf-up'), /receiver/, 'iperf3 guest → target completed');
  t.notMatch(section('iperf-up'), /error/);
  t.match(section('iperf-down'), /receiver/, 'iperf3 target → guest completed');
  t.notMatch(section('iperf-down'), /error/);
  for (const [name, what] of [
    ['iperf-udp', 'iperf3 -u guest → target over IPv4'],
    ['iperf-udp6', 'iperf3 -u -R target → guest over IPv6'],
  ] as const) {
    t.notMatch(section(name), /error/, `${what}: iperf3 ended on its own`);
    const m = section(name).match(/(\d+)\/(\d+) \([^)]*\)\s+receiver/);
    t.ok(m && Number(m[2]) > 0 && Number(m[1]) <= Number(m[2]) / 10, `${what} at 50 Mbit/s: datagrams received, under 10 % lost (${m?.[1]}/${m?.[2]})`);
  }
  const hops4 = [...section('traceT4').matchAll(/^\s*(\d+)\s+([0-9.]+)/gm)].map((m) => m[2]);
  t.same(hops4, ['10.0.2.2', topo.router1[0], topo.router2[0], t4], 'traceroute -T: gateway, router 1, router 2, target');
  const hops6 = [...section('traceT6').matchAll(/^\s*(\d+)\s+([0-9a-f:]+)/gm)].map((m) => m[2]);
  t.same(hops6, ['fec0::2', topo.router1[1], topo.router2[1], t6], 'traceroute -6 -T: gateway, router 1, router 2, target');
  for (const [name, want] of [
    ['mtrtcp4', ['10.0.2.2', topo.router1[0], topo.router2[0], t4]],
    ['mtrtcp6', ['fec0::2', topo.router1[1], topo.router2[1], t6]],
  ] as const) {
    const hops = [...section(name).matchAll(/^\s*\d+\.\|--\s+(\S+)\s+([0-9.]+)%/gm)];
    t.same(
      hops.map((m) => m[1]),
      want,
      `${name} (mtr -T): gateway, router 1, router 2, target`,
    );
    t.ok(hops.length > 0 && hops.every((m) => Number(m[2]) < 100), `${name}: every hop answered (loss ${hops.map((m) => m[2]).join(', ')} %)`);
  }
  const status = await v.status();
  const tcp = (status ? (JSON.parse(status) as { tcp?: { endpoints?: Record<string, number>; bytesByReference?: number } }).tcp : undefined) ?? {};
  const endpoints = tcp.endpoints ?? {};
  t.ok((endpoints.zeroWindowProbes ?? 0) > 0, `vunet probed the closed window (zeroWindowProbes ${endpoints.zeroWindowProbes ?? 0})`);
  t.ok((tcp.bytesByReference ?? 0) > 16 << 20, `guest data went to host sockets from guest memory (bytesByReference ${tcp.bytesByReference ?? 0})`);
  // A bug that escapes a batch is logged at error level (and one in the device's kick handling
  // drops the guest's vhost-user connection): none in a run like this.
  t.same(v.errors(), [], 'vunet logged no error');
  if (process.env.VUNET_E2E_DEBUG) t.comment(out + '\n--- vunet log ---\n' + v.log());
});
