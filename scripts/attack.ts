// Hardening measurements: vunet under the attacks a hostile guest or a hostile outside can mount,
// measured on this machine only (network namespaces; nothing leaves it). Prints one block per
// scenario with the figures to compare across versions: run it once with the tree and once with
// `--vunet DIR` pointing at another checkout (built) for a before/after table.
//
//   npm run attack -- [--only stalled,halfopen,floods] [--vunet DIR] [--connections 1000] [--syns 100000]
//                     [--vunet-args='--max-memory 64M']
//
// stalled   1000 guest TCP connections to a host peer that sends without end, the guest never
//           ACKing data: vunet's RSS (what its memory budget bounds) and its memory accounts.
// halfopen  one guest connection left half-open (the guest never ACKs our SYN-ACK): CPU per second.
// floods    a real guest (QEMU) pings the gateway and a target beyond two routers, resolves names
//           and opens TCP connections every moment, while 100,000 connections flood a forwarded
//           port from outside (the guest accepts them: a static acceptor listens on port 80),
//           then while the guest itself sends 100,000 SYNs to a black-holed address: the
//           well-behaved traffic's success, vunet's CPU seconds, its longest batch.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startGuest } from './qemu.js';
import { RawGuest } from '../test/support/raw-guest.js';
import { createTopology } from '../test/support/netns.js';
import { GW_IP, tcpFrame } from '../test/support/packets.js';
import { IpProtocol, Ipv4Packet, TcpFlags, TcpOptions, TcpSegment } from '../src/wire/index.js';

const ROOT = resolve(import.meta.dirname, '..');
const SUPPORT = join(ROOT, 'test', 'support');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'stalled,halfopen,floods' },
    vunet: { type: 'string', default: ROOT },
    connections: { type: 'string', default: '1000' },
    syns: { type: 'string', default: '100000' },
    /** Extra vunet arguments, e.g. "--max-memory 64M". */
    'vunet-args': { type: 'string', default: '' },
  },
});
const EXTRA = args['vunet-args'].split(' ').filter((a) => a !== '');
const VUNET_BIN = join(resolve(args.vunet), 'bin', 'vunet.js');
const only = new Set(args.only.split(','));

/** vunet's resident memory (kB → MiB) and CPU seconds, from /proc. */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, clock ticks
}

/** The vunet under test inside namespace `ns`, its log collected; its pid is the real process
 *  (not `ip netns exec`'s). */
async function startVunet(
  ns: string,
  vunetArgs: string[],
): Promise<{ proc: ChildProcess; pid: number; log: () => string; status: () => Promise<Record<string, unknown>> }> {
  // ATTACK_NODE_ARGS: node flags for the vunet under test (e.g. --trace-gc).
  const nodeArgs = process.env.ATTACK_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
  const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, ...nodeArgs, VUNET_BIN, ...vunetArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (log += d.toString()));
  for (let i = 0; i < 300 && !log.includes('Start QEMU with'); i++) await sleep(50);
  if (!log.includes('Start QEMU with')) throw new Error(`vunet did not start: ${log}`);
  const pid = Number(
    spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
      .stdout.split('\n')
      .find((p) => p !== '' && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('vunet.js')),
  );
  const status = async (): Promise<Record<string, unknown>> => {
    const before = log.length;
    process.kill(pid, 'SIGUSR1');
    for (let i = 0; i < 40; i++) {
      await sleep(50);
      const line = log
        .slice(before)
        .split('\n')
        .find((l) => l.includes('"msg":"status"'));
      if (line) return JSON.parse(line) as Record<string, unknown>;
    }
    return {};
  };
  return { proc, pid, log: () => log, status };
}

function socketDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-attack-'));
  chmodSync(dir, 0o1777); // vunet started as root stops as nobody
  return dir;
}

function netns(name: string): () => void {
  spawnSync('ip', ['netns', 'del', name]);
  spawnSync('ip', ['netns', 'add', name]);
  spawnSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return () => void spawnSync('ip', ['netns', 'del', name]);
}

const SYN = TcpFlags.SYN;
const ACK = TcpFlags.ACK;

/** A guest SYN as Linux sends it: MSS, window scale 7, 64240 window. */
function linuxSyn(port: number): Uint8Array {
  const o = new TcpOptions();
  o.mss = 1460;
  o.windowScale = 7;
  o.sackPermitted = true;
  return tcpFrame(port, 9000, 1000, 0, SYN, undefined, { dst: GW_IP, options: o, window: 64240 });
}

type Vunet = Awaited<ReturnType<typeof startVunet>>;

/**
 * Runs `fn` with a vunet in a fresh namespace whose gateway leads to a host peer sending without
 * end (127.0.0.1:9000 there), and a raw guest attached to it; tears everything down after.
 */
async function withRawGuest(fn: (v: Vunet, g: RawGuest) => Promise<void>): Promise<void> {
  const ns = `vatk${process.pid % 10000}`;
  const dropNs = netns(ns);
  const dir = socketDir();
  const sender = spawn('ip', ['netns', 'exec', ns, process.execPath, join(SUPPORT, 'endless-sender.mjs'), '127.0.0.1', '9000'], { stdio: 'ignore' });
  const v = await startVunet(ns, ['--socket', join(dir, 's'), '--mtu', '1500', '--log-level', 'info', ...EXTRA]);
  try {
    const g = await RawGuest.attach(join(dir, 's'));
    await fn(v, g);
    g.close();
  } finally {
    v.proc.kill('SIGTERM');
    sender.kill('SIGTERM');
    await sleep(300);
    dropNs();
    rmSync(dir, { recursive: true, force: true });
  }
}

function stalled(n: number): Promise<void> {
  return withRawGuest(async (v, g) => {
    const base = rssMiB(v.pid);
    let established = 0;
    let dataSegments = 0;
    g.onFrame = (f) => {
      if (f[12] !== 0x08 || f[13] !== 0x00) return;
      const ip = new Ipv4Packet().at(f, 14, f.length - 14);
      if (ip.protocol !== IpProtocol.TCP) return;
      const s = new TcpSegment().at(f, ip.payloadOffset, ip.payloadLength);
      if ((s.flags & (SYN | ACK)) === (SYN | ACK)) {
        // Complete the handshake (window 502 << 7 = 64256), then never ACK anything again.
        g.send(tcpFrame(s.dstPort, 9000, 1001, (s.seq + 1) >>> 0, ACK, undefined, { dst: GW_IP, window: 502 }));
        established++;
      } else if (s.payloadLength > 0) dataSegments++;
    };
    for (let i = 0; i < n; i++) g.send(linuxSyn(20000 + i));
    let peak = base;
    const t0 = performance.now();
    while (performance.now() - t0 < 20_000) {
      g.pump();
      peak = Math.max(peak, rssMiB(v.pid));
      await sleep(5);
    }
    const st = await v.status();
    console.log(`stalled: ${n} connections, ${established} established, ${dataSegments} data segments sent into the guest's window, never ACKed`);
    console.log(`  vunet RSS: ${base.toFixed(0)} MiB at start, ${peak.toFixed(0)} MiB peak (+${(peak - base).toFixed(0)} MiB)`);
    if (st.memory) console.log(`  memory budget: ${JSON.stringify(st.memory)}`);
  });
}

function halfOpen(): Promise<void> {
  return withRawGuest(async (v, g) => {
    g.send(linuxSyn(30000)); // and the SYN-ACK is never acknowledged
    for (let i = 0; i < 100; i++) {
      g.pump();
      await sleep(10);
    }
    const c0 = cpuSeconds(v.pid);
    const t0 = performance.now();
    while (performance.now() - t0 < 10_000) {
      g.pump();
      await sleep(50);
    }
    const cpu = cpuSeconds(v.pid) - c0;
    console.log(
      `halfopen: one connection the guest never completes: vunet used ${((cpu / ((performance.now() - t0) / 1000)) * 100).toFixed(1)}% of a core over 10 s`,
    );
  });
}

interface Check {
  t: number;
  gw: number;
  ping: number;
  dns: number;
  tcp: number;
}

function summarize(label: string, checks: Check[]): string {
  const n = checks.length;
  const pct = (k: 'gw' | 'ping' | 'dns' | 'tcp'): string => (n === 0 ? '-' : `${checks.filter((c) => c[k] === 1).length}/${n}`);
  return `  ${label.padEnd(26)} ping gateway ${pct('gw')}, ping target ${pct('ping')}, DNS ${pct('dns')}, new TCP ${pct('tcp')}`;
}

async function floods(syns: number): Promise<void> {
  const tools: Record<string, Buffer> = {};
  for (const tool of ['synflood', 'acceptor']) {
    const out = join(tmpdir(), `${tool}-${process.pid}`);
    const gcc = spawnSync('gcc', ['-static', '-O2', '-o', out, join(SUPPORT, 'guest-tools', `${tool}.c`)], { encoding: 'utf8' });
    if (gcc.status !== 0) {
      console.log(`floods: skipped (cannot build the guest's ${tool}: ${gcc.stderr.trim() || gcc.error?.message})`);
      return;
    }
    tools[tool] = readFileSync(out);
    rmSync(out, { force: true });
  }
  const topo = createTopology('attack');
  // A black hole one hop away: router 1 drops 198.51.100.0/24 without a word.
  topo.exec(topo.router1Ns, ['ip', 'route', 'add', 'blackhole', '198.51.100.0/24']);
  const dir = socketDir();
  const inTarget = (...cmd: string[]): ChildProcess => spawn('ip', ['netns', 'exec', topo.targetNs, ...cmd], { stdio: 'ignore' });
  const services = [inTarget('socat', 'TCP4-LISTEN:7,fork,reuseaddr', 'PIPE'), inTarget(process.execPath, join(SUPPORT, 'dns-responder.mjs'))];
  let go: ChildProcess | undefined;
  const v = await startVunet(topo.vunetNs, ['--socket', join(dir, 's'), '--log-level', 'info', '--dns', topo.target4, '-t', '18080:80', ...EXTRA]);
  try {
    const T = topo.target4;
    const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 2 >/dev/null 2>&1
chk() {
  a=$(cut -d' ' -f1 /proc/uptime)
  ping -c1 -W1 10.0.2.2 >/dev/null 2>&1 && g=1 || g=0
  ping -c1 -W1 ${T} >/dev/null 2>&1 && p=1 || p=0
  nslookup www.example 10.0.2.3 >/dev/null 2>&1 && d=1 || d=0
  echo hi | socat -T2 - TCP4:${T}:7 2>/dev/null | grep -q hi && c=1 || c=0
  echo "chk $a $g $p $d $c"
}
/acceptor 80 &
acceptor=$!
echo "== start $(cut -d' ' -f1 /proc/uptime)"
( while [ ! -e /tmp/stop ]; do chk; sleep 0.2; done ) &
checks=$!
i=0; until wget -q -O /dev/null http://10.0.2.2:18090/ 2>/dev/null; do sleep 1; i=$((i+1)); [ $i -gt 600 ] && break; done
echo "== flood-out $(cut -d' ' -f1 /proc/uptime)"
/synflood 10.0.2.15 198.51.100.7 80 ${syns}
echo "== flood-out-done $(cut -d' ' -f1 /proc/uptime)"
sleep 8
touch /tmp/stop
wait $checks
kill $acceptor
echo "== end $(cut -d' ' -f1 /proc/uptime)"
`;
    const extraFiles = Object.fromEntries(Object.entries(tools).map(([name, data]) => [name, { data, mode: 0o755 }]));
    const guest = await startGuest({ socketPath: join(dir, 's'), script, extraFiles, memoryMiB: 256, timeoutMs: 900_000, guestTimeoutSec: 880 });
    await guest.waitFor(/== start/, 120_000);
    await sleep(8000); // a baseline before anything starts
    const upAt = (re: RegExp): number => Number(re.exec(guest.output)?.[1] ?? NaN);
    const c0 = cpuSeconds(v.pid);
    const inStart = performance.now();
    const flood = spawnSync(
      'ip',
      ['netns', 'exec', topo.vunetNs, process.execPath, join(SUPPORT, 'connect-flood.mjs'), '127.0.0.1', '18080', String(syns), '500'],
      { encoding: 'utf8', timeout: 600_000 },
    );
    const inSeconds = (performance.now() - inStart) / 1000;
    const cIn = cpuSeconds(v.pid) - c0;
    const stIn = await v.status();
    // The guest's cue to start its own flood: the gateway's port 18090 (the host's loopback) answers.
    go = spawn('ip', ['netns', 'exec', topo.vunetNs, process.execPath, '-e', "require('http').createServer((q,r)=>r.end('go')).listen(18090,'127.0.0.1')"], {
      stdio: 'ignore',
    });
    await guest.waitFor(/== flood-out /, 120_000);
    const c1 = cpuSeconds(v.pid);
    await guest.waitFor(/== flood-out-done/, 600_000);
    const cOut = cpuSeconds(v.pid) - c1;
    const stOut = await v.status();
    const exit = await guest.exited;
    const checks: Check[] = [...guest.output.matchAll(/^chk ([\d.]+) (\d) (\d) (\d) (\d)/gm)].map((m) => ({
      t: Number(m[1]),
      gw: Number(m[2]),
      ping: Number(m[3]),
      dns: Number(m[4]),
      tcp: Number(m[5]),
    }));
    const start = upAt(/== start ([\d.]+)/);
    const outStart = upAt(/== flood-out ([\d.]+)/);
    const outEnd = upAt(/== flood-out-done ([\d.]+)/);
    const inEndGuest = outStart; // the guest learns the inbound flood is over when it may start its own
    const inStartGuest = start + 8;
    console.log(`floods (guest exit ${exit.guestStatus ?? exit.code}):`);
    console.log(
      `  inbound: ${syns} connections to a forwarded port from outside: ${flood.stdout.trim()}; ${inSeconds.toFixed(1)} s, vunet ${cIn.toFixed(1)} CPU s`,
    );
    console.log(`    vunet: ${JSON.stringify({ loop: stIn.loop, tcp: pick(stIn.tcp, ['connectsIn', 'acceptsRefused', 'acceptsEvicted', 'flows']) })}`);
    console.log(
      `  outbound: ${/synflood: (.*)/.exec(guest.output)?.[1] ?? '?'} SYNs from the guest to a black hole; ${(outEnd - outStart).toFixed(1)} s, vunet ${cOut.toFixed(1)} CPU s`,
    );
    console.log(
      `    vunet: ${JSON.stringify({ loop: stOut.loop, device: pick(stOut.device, ['txFrames', 'txSlices', 'txFailed']), tcp: pick(stOut.tcp, ['connectsOut', 'synsDropped', 'connectingEvicted', 'tableFull', 'flows']) })}`,
    );
    console.log(`    vunet at the end: RSS ${rssMiB(v.pid).toFixed(0)} MiB, failures ${JSON.stringify(stOut.failures)}`);
    if (process.env.ATTACK_GC_LOG) writeFileSync(process.env.ATTACK_GC_LOG, v.log());
    console.log('  the well-behaved guest meanwhile (successes / attempts):');
    console.log(
      summarize(
        'before the floods',
        checks.filter((c) => c.t < inStartGuest),
      ),
    );
    console.log(
      summarize(
        'inbound flood',
        checks.filter((c) => c.t >= inStartGuest && c.t < inEndGuest),
      ),
    );
    console.log(
      summarize(
        'outbound flood',
        checks.filter((c) => c.t >= outStart && c.t < outEnd),
      ),
    );
    console.log(
      summarize(
        'after',
        checks.filter((c) => c.t >= outEnd),
      ),
    );
  } finally {
    go?.kill('SIGTERM');
    for (const s of services) s.kill('SIGTERM');
    v.proc.kill('SIGTERM');
    await sleep(300);
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

function pick(o: unknown, keys: string[]): Record<string, unknown> {
  const src = (o ?? {}) as Record<string, unknown>;
  return Object.fromEntries(keys.filter((k) => k in src).map((k) => [k, src[k]]));
}

console.log(`vunet under attack: ${VUNET_BIN}`);
if (only.has('stalled')) await stalled(Number(args.connections));
if (only.has('halfopen')) await halfOpen();
if (only.has('floods')) await floods(Number(args.syns));
