// The fuzz target: a whole vunet runtime in its own process, so that a crash shows up as this
// process exiting (with its stack on stderr) instead of taking the harness down. Started by
// TargetProcess (target-process.ts) with an IPC channel; configured by FUZZ_TARGET (JSON,
// TargetConfig). It answers { id, cmd: 'probe' } with a Probe and exits on { cmd: 'exit' } or when
// the parent goes away. Errors vunet logs (internal errors with their stacks) go to stderr, which
// the parent keeps.
import { createSocket } from 'node:dgram';
import { readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { pino } from 'pino';
import { defaultConfig } from '../../../src/iface/config.js';
import { Vunet } from '../../../src/main/vunet.js';
import { FakeHostNet, FakeHostTcp, FakeHostUdp, FakeHostUdpListen } from './fake-host.js';
import type { Probe, TargetConfig, TargetReply, TargetRequest } from './target-protocol.js';

const config = JSON.parse(process.env.FUZZ_TARGET ?? '{}') as TargetConfig;
if (!config.socketPath) throw new Error('FUZZ_TARGET must name the socket path');

const logger = pino({ level: 'error', base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
const fake = config.fakeHost
  ? { hostNet: new FakeHostNet(), hostUdp: new FakeHostUdp(), hostTcp: new FakeHostTcp(), hostUdpListen: new FakeHostUdpListen() }
  : {};
const vunet = await Vunet.start({
  socketPath: config.socketPath,
  config: { ...defaultConfig(), ...(config.mtu !== undefined ? { mtu: config.mtu } : {}) },
  logger,
  maxMemory: config.maxMemory,
  // Resolvers on the loopback of the target's own namespace (or nowhere, with the fake host):
  // a DNS query from the guest is never forwarded off this machine, whatever /etc/resolv.conf says.
  dnsUpstream: ['127.0.0.1', '::1'],
  ...fake,
});

/**
 * Peers for the NAT on the namespace's loopback, where the gateway addresses lead (vunet maps
 * them to the host's loopback) and where the DNS forwarder sends: TCP on 80 (a 64 KiB greeting,
 * then echo: data toward the guest too), 7 and 53 (echo), UDP echo on 7 and 53. Without them
 * every connect is refused and every datagram unanswered, and the NAT's data paths never run.
 * Server-side connections end after 10 s, as busy hosts do, so they cannot pile up.
 */
function loopbackServices(): void {
  const greeting = new Uint8Array(64 * 1024).fill(0x61);
  for (const host of ['127.0.0.1', '::1']) {
    for (const port of [80, 7, 53]) {
      const server = createServer((s) => {
        s.on('error', () => undefined);
        s.setTimeout(10_000, () => s.destroy());
        if (port === 80) s.write(greeting);
        s.on('data', (d) => s.write(d));
      });
      server.on('error', (err) => logger.error({ err, host, port }, 'fuzz target: loopback TCP service failed'));
      server.listen(port, host);
    }
    for (const port of [7, 53]) {
      const u = createSocket(host.includes(':') ? 'udp6' : 'udp4');
      u.on('message', (msg, rinfo) => u.send(msg, rinfo.port, rinfo.address));
      u.on('error', (err) => logger.error({ err, host, port }, 'fuzz target: loopback UDP service failed'));
      u.bind(port, host);
    }
  }
}
if (!config.fakeHost) loopbackServices();

function probe(): Probe {
  const s = vunet.status() as {
    connected: boolean;
    device: Probe['device'];
    loop: Probe['loop'];
    failures: Probe['failures'];
    memory: { used: number; peak: number; limit: number; refused: number };
  };
  const backend = vunet.server.backend;
  const mem = process.memoryUsage();
  let fds = -1;
  try {
    fds = readdirSync('/proc/self/fd').length;
  } catch {
    // no /proc: unknown
  }
  return {
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    external: mem.external,
    fds,
    connected: s.connected,
    device: s.device,
    loop: s.loop,
    failures: s.failures,
    memory: { used: s.memory.used, peak: s.memory.peak, limit: s.memory.limit, refused: s.memory.refused },
    server: { ...vunet.server.stats },
    queues: backend
      ? backend.queues.map((q) => ({ index: q.index, ready: q.ready, broken: q.broken ?? null, malformed: q.stats.malformed, popped: q.stats.popped }))
      : [],
  };
}

const send = (m: TargetReply): void => {
  process.send?.(m);
};

process.on('message', (raw: unknown) => {
  const m = raw as TargetRequest;
  if (m.cmd === 'probe') {
    send({ type: 'probe', id: m.id, probe: probe() });
  } else if (m.cmd === 'status') {
    send({ type: 'status', id: m.id, status: JSON.parse(JSON.stringify(vunet.status())) as Record<string, unknown> });
  } else if (m.cmd === 'exit') {
    void vunet.close().finally(() => process.exit(0));
  }
});
// The harness went away (killed, crashed): nobody will ask again.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
