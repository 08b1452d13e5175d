// End to end, a paused guest is not a failed one: a real guest downloads a file (served slowly, so
// the download lasts) from the host through the gateway address (10.0.2.2, the host's loopback:
// segments to the guest then come from one of our own addresses, whose flows the neighbour cache
// reports failures to); mid-download its VM is stopped through
// QEMU's monitor for 15 s (what `virsh suspend` does: QEMU stops the vhost-user rings and starts
// them again), then QEMU itself is frozen with SIGSTOP for 60 s (a debugger, a suspended laptop):
// meanwhile the guest answers nothing, not even ARP. Afterwards the download resumes and arrives
// intact. Then, during a second, slower download, the guest stops answering ARP for 60 s (its NIC
// set to NOARP, then its own gateway entry made static: NOARP flushes the table) while it runs: vunet's entry for it fails, and the
// connection must outlive that too — data resumes once the guest answers ARP again.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { blob } from './support/blob.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';

const why = canUseNetns();
const SIZE = 48 << 20;
const RATE = 4 << 20; // bytes a second: about 12 s of transfer
/** The second download's rate: it outlasts 60 s without ARP answers. */
const SLOW_RATE = 512 << 10;

/** A QEMU machine protocol client: one command at a time, answers in order. */
async function qmp(path: string): Promise<{ run(command: string): Promise<unknown>; close(): void }> {
  const sock = connect(path);
  let buf = '';
  const waiting: ((v: unknown) => void)[] = [];
  sock.on('data', (d) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const msg = JSON.parse(buf.slice(0, nl)) as { return?: unknown; error?: unknown; QMP?: unknown; event?: unknown };
      buf = buf.slice(nl + 1);
      if (msg.event !== undefined) continue;
      waiting.shift()?.(msg.QMP ?? msg.return ?? msg.error);
    }
  });
  const next = (): Promise<unknown> => new Promise((resolve) => waiting.push(resolve));
  await next(); // the greeting
  const run = (command: string): Promise<unknown> => {
    const p = next();
    sock.write(`${JSON.stringify({ execute: command })}\n`);
    return p;
  };
  await run('qmp_capabilities');
  return { run, close: () => sock.destroy() };
}

/** The pauses here are the test: a guest stopped, frozen or silent for that long. */
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('a guest stopped (monitor), frozen (SIGSTOP, 60 s) or silent to ARP (60 s) mid-download resumes it intact', { skip: why ?? false }, async (t) => {
  const topo = createTopology('pause');
  const dir = mkdtempSync(join(tmpdir(), 'vunet-pause-'));
  const file = join(dir, 'blob');
  const data = blob(SIZE, 0x2545f491);
  writeFileSync(file, data);
  const sha = createHash('sha256').update(data).digest('hex');
  const serve = (port: number, rate: number) =>
    spawn('ip', ['netns', 'exec', topo.vunetNs, process.execPath, join(import.meta.dirname, 'support', 'http-file.mjs'), file, String(port), String(rate)], {
      stdio: 'ignore',
    });
  const server = serve(8080, RATE);
  const slow = serve(8081, SLOW_RATE);
  const sock = join(dir, 'vunet.sock');
  const qmpPath = join(dir, 'qmp.sock');
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    server.kill('SIGTERM');
    slow.kill('SIGTERM');
    vunet?.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const v = await spawnVunet(topo.vunetNs, ['--socket', sock, '--log-level', 'info']);
  vunet = v.proc;
  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
echo "== download"
timeout 300 wget -q -O - http://10.0.2.2:8080/blob | sha256sum
echo "== after"
ping -c 1 -W 3 ${topo.target4} >/dev/null 2>&1 && echo "ping ok"
echo "== silent"
(timeout 400 wget -q -O - http://10.0.2.2:8081/blob | sha256sum > /tmp/sum2; touch /tmp/done2) &
sleep 3
ip link set eth0 arp off
arp -i eth0 -s 10.0.2.2 52:55:0a:00:02:02
sleep 60
ip link set eth0 arp on
while [ ! -e /tmp/done2 ]; do sleep 1; done
echo "== silent-done"
cat /tmp/sum2
`;
  const guest = await startGuest({
    socketPath: sock,
    script,
    memoryMiB: 256,
    timeoutMs: 700_000,
    guestTimeoutSec: 680,
    reconnect: true,
    extraArgs: ['-qmp', `unix:${qmpPath},server=on,wait=off`],
  });
  t.teardown(() => guest.kill('SIGKILL'));
  await guest.waitFor(/== download/, 120_000);
  await sleep(2000);
  const monitor = await qmp(qmpPath);
  t.same(await monitor.run('stop'), {}, 'VM stopped through the monitor');
  await sleep(15_000);
  t.same(await monitor.run('cont'), {}, 'and continued');
  monitor.close();
  await sleep(3000);
  t.ok(guest.pid !== undefined && process.kill(guest.pid, 'SIGSTOP'), 'QEMU frozen');
  await sleep(60_000);
  process.kill(guest.pid!, 'SIGCONT');
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  const out = guest.output.split('== download')[1]?.split('== silent')[0] ?? '';
  t.match(out, new RegExp(sha), 'the download resumed and arrived intact');
  t.match(out, /ping ok/, 'the guest reaches the network afterwards');
  t.match(guest.output.split('== silent-done')[1] ?? '', new RegExp(sha), 'the download outlived 60 s without ARP answers, intact');
  t.notMatch(v.log(), /TCP connection closed|connection aborted/, 'vunet kept the connections');
});
