// Soak: a real guest (QEMU, TCG) runs mixed traffic through vunet for as long as asked — HTTP
// downloads and iperf3 both ways to a target behind two routers, pings on both families, DNS,
// bursts of short TCP connections, UDP echo — while a host client uses a port forward into the
// guest. vunet's resident memory is sampled every few seconds; at the end the script prints the
// samples' summary and whether its own memory stayed flat over the second half of the run: the
// mean of its last tenth within 10 % of the mean of the tenth from its middle on. (It climbs for
// the first 6-10 minutes, by ~13 MiB, then holds, in runs of 12, 15 and 60 minutes: a baseline
// taken earlier called short runs "not flat" on their plateau.) Its own memory is RssAnon (the
// JavaScript heap, the addons' allocations); VmRSS also counts the executable's pages (RssFile)
// and the pages of guest memory vunet touched (RssShmem, printed apart: the guest's, not
// vunet's to free). Everything stays on this machine (network namespaces).
//
//   npm run soak -- [--minutes 60] [--sample-seconds 10]
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startGuest } from './qemu.js';
import { createTopology, spawnVunet } from '../test/support/netns.js';

const ROOT = resolve(import.meta.dirname, '..');
const SUPPORT = join(ROOT, 'test', 'support');
const { values: args } = parseArgs({ options: { minutes: { type: 'string', default: '60' }, 'sample-seconds': { type: 'string', default: '10' } } });
const minutes = Number(args.minutes);
const every = Number(args['sample-seconds']) * 1000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** /proc/PID/status: vunet's own resident memory (RssAnon) and the guest memory it has touched
 *  (RssShmem), MiB. */
function rssMiB(pid: number): { rss: number; shmem: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
    return m ? Number(m[1]) / 1024 : NaN;
  };
  return { rss: kb('RssAnon'), shmem: kb('RssShmem') };
}

const topo = createTopology('soak');
const dir = mkdtempSync(join(tmpdir(), 'vunet-soak-'));
chmodSync(dir, 0o1777);
const file = join(dir, 'blob');
writeFileSync(file, Buffer.alloc(8 << 20, 0x3c));
const inTarget = (...cmd: string[]): ChildProcess => spawn('ip', ['netns', 'exec', topo.targetNs, ...cmd], { stdio: 'ignore' });
const services = [
  inTarget(process.execPath, join(SUPPORT, 'http-file.mjs'), file, '8080'),
  inTarget('socat', 'TCP4-LISTEN:7,fork,reuseaddr', 'PIPE'),
  inTarget('socat', 'UDP4-RECVFROM:7,fork', 'PIPE'),
  inTarget('iperf3', '-s', '-p', '5201'),
  inTarget(process.execPath, join(SUPPORT, 'dns-responder.mjs')),
];
const sock = join(dir, 'vunet.sock');
const v = await spawnVunet(topo.vunetNs, ['--socket', sock, '--log-level', 'info', '--dns', topo.target4, '-t', '15000:5000']);
const pid = Number(
  spawnSync('ip', ['netns', 'pids', topo.vunetNs], { encoding: 'utf8' })
    .stdout.split('\n')
    .find((p) => p !== '' && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('vunet')),
);
const T = topo.target4;
const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 2 >/dev/null 2>&1
i=0; while [ $i -lt 60 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
socat TCP4-LISTEN:5000,fork,reuseaddr PIPE &
echo "== soak"
end=$(( $(cut -d. -f1 /proc/uptime) + ${Math.round(minutes * 60)} ))
round=0; bad=0; fh=0; fp=0; fp6=0; fd=0; ft=0; fu=0; fi=0
while [ $(cut -d. -f1 /proc/uptime) -lt $end ]; do
  round=$((round+1))
  wget -q -O - http://${T}:8080/blob | wc -c | grep -q 8388608 || fh=$((fh+1))
  ping -c 3 -i 0.2 -W 2 ${T} >/dev/null 2>&1 || fp=$((fp+1))
  ping6 -c 2 -W 2 fec0::2 >/dev/null 2>&1 || fp6=$((fp6+1))
  nslookup www.example 10.0.2.3 >/dev/null 2>&1 || fd=$((fd+1))
  i=0; while [ $i -lt 20 ]; do echo x | socat -T 3 - TCP4:${T}:7 2>/dev/null | grep -q x || ft=$((ft+1)); i=$((i+1)); done
  echo u | socat -T 2 - UDP4:${T}:7 2>/dev/null | grep -q u || fu=$((fu+1))
  [ $((round % 5)) -eq 0 ] && { iperf3 -c ${T} -p 5201 -t 3 >/dev/null 2>&1 || fi=$((fi+1)); iperf3 -c ${T} -p 5201 -t 3 -R >/dev/null 2>&1 || fi=$((fi+1)); }
  bad=$((fh+fp+fp6+fd+ft+fu+fi))
  echo "round $round bad $bad http $fh ping $fp ping6 $fp6 dns $fd tcp $ft udp $fu iperf $fi"
done
echo "== soak-done rounds $round failures $bad"
`;
const guest = await startGuest({ socketPath: sock, script, memoryMiB: 512, timeoutMs: (minutes * 60 + 600) * 1000, guestTimeoutSec: minutes * 60 + 500 });
await guest.waitFor(/== soak/, 120_000);
const samples: { t: number; rss: number; shmem: number }[] = [];
const t0 = performance.now();
let forwarded = 0;
let forwardFailed = 0;
while (!/== soak-done/.test(guest.output)) {
  samples.push({ t: (performance.now() - t0) / 1000, ...rssMiB(pid) });
  if (samples.length % Math.max(1, Math.round(60_000 / every)) === 0) {
    // Once a minute: the counters that would show a slow leak (flows, memory, refusals, fds).
    const before = v.log().length;
    process.kill(pid, 'SIGUSR1');
    await sleep(300);
    const line = v
      .log()
      .slice(before)
      .split('\n')
      .find((l) => l.includes('"msg":"status"'));
    const fds = spawnSync('ls', [`/proc/${pid}/fd`], { encoding: 'utf8' }).stdout.split('\n').length - 1;
    if (line) {
      const st = JSON.parse(line) as { memory?: { used?: number }; failures?: unknown; tcp?: Record<string, unknown> };
      const tcp = st.tcp ?? {};
      const pickTcp = Object.fromEntries(
        ['flows', 'refused', 'unreachable', 'timedOut', 'tableFull', 'synsDropped', 'noMemory', 'acceptsRefused', 'resetsToGuest'].map((k) => [k, tcp[k]]),
      );
      console.log(
        `  minute ${Math.round(samples.at(-1)!.t / 60)}: fds ${fds}, memory ${st.memory?.used}, failures ${JSON.stringify(st.failures)}, tcp ${JSON.stringify(pickTcp)}, guest ${[...guest.output.matchAll(/^round \d+ bad \d+ (.*)$/gm)].at(-1)?.[1] ?? '-'}`,
      );
    }
  }
  // The host side uses the forward into the guest meanwhile.
  const r = spawnSync('ip', ['netns', 'exec', topo.vunetNs, 'socat', '-T', '3', '-', 'TCP4:127.0.0.1:15000'], {
    input: 'soak\n',
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.stdout === 'soak\n') forwarded++;
  else forwardFailed++;
  await Promise.race([guest.exited, sleep(every)]);
}
const exit = await guest.exited;
const summary = /== soak-done rounds (\d+) failures (\d+)/.exec(guest.output);
const n = samples.length;
const mean = (a: { rss: number }[]): number => a.reduce((s, x) => s + x.rss, 0) / Math.max(1, a.length);
const tenth = Math.max(1, Math.floor(n / 10));
const half = n >> 1;
const warm = mean(samples.slice(half, half + tenth));
const last = mean(samples.slice(n - tenth));
const max = Math.max(...samples.map((s) => s.rss));
const min = Math.min(...samples.map((s) => s.rss));
console.log(
  `soak: ${minutes} min, guest exit ${exit.guestStatus ?? exit.code}, ${summary?.[1] ?? '?'} rounds, ${summary?.[2] ?? '?'} failed operations; forward ${forwarded} ok / ${forwardFailed} failed`,
);
console.log(
  `  vunet's own memory (RssAnon, MiB): min ${min.toFixed(0)}, max ${max.toFixed(0)}; at the middle ${warm.toFixed(1)}, at the end ${last.toFixed(1)} (${(((last - warm) / warm) * 100).toFixed(1)} %)`,
);
console.log(`  samples every ${every / 1000} s: ${samples.map((s) => s.rss.toFixed(0)).join(' ')}`);
console.log(`  guest memory vunet touched (RssShmem, MiB): ${samples.map((s) => s.shmem.toFixed(0)).join(' ')}`);
console.log(Math.abs(last - warm) / warm <= 0.1 ? '  flat within 10 %' : '  NOT flat within 10 %');
console.log(`  failures by kind: ${[...guest.output.matchAll(/^round \d+ bad \d+ (.*)$/gm)].at(-1)?.[1] ?? '?'}`);
process.kill(pid, 'SIGUSR1');
await sleep(500);
const status = v
  .log()
  .split('\n')
  .findLast((l) => l.includes('"msg":"status"'));
if (status) {
  const st = JSON.parse(status) as Record<string, unknown>;
  console.log(`  vunet: ${JSON.stringify({ memory: st.memory, loop: st.loop, failures: st.failures, tcp: st.tcp, udp: st.udp, fence: st.fence })}`);
}
for (const s of services) s.kill('SIGTERM');
v.proc.kill('SIGTERM');
await sleep(300);
topo.destroy();
rmSync(dir, { recursive: true, force: true });
