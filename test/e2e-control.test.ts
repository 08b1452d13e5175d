// End to end, `vunet ctl` with a real guest: a TCP forward added while the guest runs carries a
// host client's connection to the guest's server and back; while that connection stays open,
// `vunet ctl flows` lists it (inbound, ESTABLISHED, the guest's port, bytes), `leases` the guest's
// DHCP lease and `neighbours` its address and MAC; `status` names the guest; once the forward is
// removed the next connection is refused, while the one it brought still carries data.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';
import { until } from './support/wait.js';

const why = canUseNetns();
const BIN = join(import.meta.dirname, '..', 'bin', 'vunet.js');
const GUEST_MAC = '52:54:00:12:34:56';

t.test('vunet ctl with a running guest: add a forward, list flows, leases, neighbours, remove it', { skip: why ?? false }, async (t) => {
  const topo = createTopology('ctl');
  const dir = mkdtempSync(join(tmpdir(), 'vunet-ctl-'));
  chmodSync(dir, 0o1777); // vunet started as root runs as nobody, and removes its sockets here
  const sock = join(dir, 'vunet.sock');
  let vunet: ChildProcess | undefined;
  const clients: ChildProcess[] = [];
  t.teardown(() => {
    for (const c of clients) c.kill('SIGTERM');
    vunet?.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  // 15001 → 5001 from the start: the guest waits on it for the end of the test.
  const v = await spawnVunet(topo.vunetNs, ['--socket', sock, '--log-level', 'info', '--dns', topo.target4, '-t', '127.0.0.1:15001:5001']);
  vunet = v.proc;
  const ctl = (...args: string[]) => spawnSync(process.execPath, [BIN, 'ctl', '--socket', sock, ...args], { encoding: 'utf8', timeout: 20_000 });
  const json = <T>(...args: string[]): T => {
    const r = ctl(...args);
    if (r.status !== 0) throw new Error(`vunet ctl ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };

  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
socat TCP4-LISTEN:5000,fork,reuseaddr PIPE &
i=0; while [ $i -lt 100 ]; do netstat -ltn | grep -q ':5000 ' && break; sleep 0.1; i=$((i+1)); done
echo "== ready"
socat -u TCP4-LISTEN:5001 - 2>&1
echo "== end"
`;
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 240_000, guestTimeoutSec: 200, mac: GUEST_MAC });
  await guest.waitFor(/== ready/, 200_000);

  // Added while the guest runs: one log line, and it carries a connection.
  const added = ctl('add', '-t', '127.0.0.1:15000:5000');
  t.equal(added.status, 0, `add: ${added.stderr}`);
  await until(() => v.log().includes('port forward listening: TCP 127.0.0.1:15000 → guest port 5000'), 'the log line of the forward added', 5000);
  const once = spawnSync('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-t', '10', '-', 'TCP4:127.0.0.1:15000'], { input: 'hello-ctl\n', timeout: 60_000 });
  t.equal(once.stdout.toString(), 'hello-ctl\n', 'the forward added carries a connection to the guest and back');

  // A connection kept open: the flows list it.
  const held = spawn('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-', 'TCP4:127.0.0.1:15000'], { stdio: ['pipe', 'pipe', 'ignore'] });
  clients.push(held);
  let echoed = '';
  held.stdout.on('data', (d: Buffer) => (echoed += d.toString()));
  held.stdin.write('first\n');
  await until(() => echoed === 'first\n', 'the held connection echoes', 30_000);
  interface Flow {
    proto: string;
    direction: string;
    state: string;
    guest: string;
    remote: string;
    host?: string;
    bytesToGuest?: number;
    bytesFromGuest?: number;
    ageSec?: number;
  }
  const flows = json<Flow[]>('flows');
  const done = flows.find((f) => f.proto === 'tcp' && f.state !== 'ESTABLISHED' && f.guest === '10.0.2.15:5000');
  if (done) t.match(done, { bytesToGuest: 10, bytesFromGuest: 10 }, 'the closed one: its bytes, the FIN not counted');
  const open = flows.filter((f) => f.proto === 'tcp' && f.direction === 'inbound' && f.guest === '10.0.2.15:5000' && f.state === 'ESTABLISHED');
  t.equal(open.length, 1, `the open connection is listed (${JSON.stringify(flows)})`);
  t.match(open[0], { remote: /^10\.0\.2\.2:\d+$/, host: /^127\.0\.0\.1:\d+$/, bytesToGuest: 6, bytesFromGuest: 6 }, 'its ends and bytes');
  t.ok((open[0]?.ageSec ?? -1) >= 0, 'its age');

  const leases = json<Array<{ mac: string; ip: string; state: string }>>('leases');
  t.match(leases, [{ mac: GUEST_MAC, ip: '10.0.2.15', state: 'bound' }], 'the guest has its DHCP lease');
  const neighbours = json<Array<{ family: number; ip: string; mac: string | null; state: string }>>('neighbours');
  t.ok(
    neighbours.some((n) => n.family === 4 && n.ip === '10.0.2.15' && n.mac === GUEST_MAC),
    `the guest in the ARP cache (${JSON.stringify(neighbours)})`,
  );
  const status = ctl('status');
  t.match(status.stdout, new RegExp(`guest: attached, link up\\n  MAC ${GUEST_MAC}\\n  IPv4 10\\.0\\.2\\.15\\n`), 'status names the guest');
  t.match(status.stdout, /\n  TCP 127\.0\.0\.1:15000 → guest port 5000\n/, 'and the forward added');
  t.match(status.stdout, /flows: TCP [1-9][0-9]* \([^)]*ESTABLISHED [1-9]/, 'and the open connection');

  // Removed: the next connection is refused; the one it brought goes on.
  const removed = ctl('remove', '-t', '127.0.0.1:15000');
  t.equal(removed.status, 0, `remove: ${removed.stderr}`);
  const refused = spawnSync('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-t', '5', '-', 'TCP4:127.0.0.1:15000'], {
    input: 'x\n',
    encoding: 'utf8',
    timeout: 30_000,
  });
  t.not(refused.status, 0, 'the next connection fails');
  t.match(refused.stderr, /Connection refused/, 'refused by the host');
  held.stdin.write('second\n');
  await until(() => echoed === 'first\nsecond\n', 'the held connection still echoes', 30_000);
  t.pass('the connection made before the removal still carries data');
  held.stdin.end();

  spawnSync('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-t', '5', '-', 'TCP4:127.0.0.1:15001'], { input: 'done\n', timeout: 30_000 });
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
});
