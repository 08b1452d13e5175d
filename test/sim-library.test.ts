// Library use of simulated networks: a topology built from TypeScript objects (no file), given to
// Vunet.start in-process, and a guest (the library's test frontend) that pings through it and
// sees what the objects describe: the reply from the host after the links' delays, time exceeded
// from the router, and net unreachable for what the topology does not claim (nat off).
import t from 'tap';
import { buildTopology } from '../src/sim/topology.js';
import type { TopologySpec } from '../src/sim/topology.js';
import { GW_IP, arpRequest, echoRequest, parseIpv4Frame } from './support/packets.js';
import { startHarness } from './support/vunet-harness.js';

const spec: TopologySpec = {
  nat: false,
  routers: { edge: { addresses: ['192.0.2.1'] } },
  hosts: { server: { addresses: ['198.51.100.7'], services: [{ udp: 7, serve: 'echo' }] } },
  links: [
    { between: ['gateway', 'edge'], delay: '20ms' },
    { between: ['edge', 'server'], delay: 30 },
  ],
};

t.test('a topology from objects, in-process: what the guest sees', async (t) => {
  const h = await startHarness({}, undefined, { topology: buildTopology(spec) });
  t.teardown(() => h.close());
  // The guest makes itself known (its ARP for the gateway), then pings three ways.
  h.send(arpRequest(GW_IP));
  await h.receive(1, 2000);
  const sent = performance.now();
  h.send(echoRequest(0x77, 1, new Uint8Array(32), { dst: 0xc6336407, ttl: 64 }));
  h.send(echoRequest(0x77, 2, new Uint8Array(32), { dst: 0xc6336407, ttl: 2 }));
  h.send(echoRequest(0x77, 3, new Uint8Array(32), { dst: 0x08080808, ttl: 64 }));
  const got: { at: number; from: number; type: number; code: number }[] = [];
  for (let i = 0; i < 50 && got.length < 3; i++) {
    for (const f of await h.receive(1, 100)) {
      if (f[12] !== 0x08 || f[13] !== 0x00) continue;
      const p = parseIpv4Frame(f);
      if (p.ip.protocol === 1) got.push({ at: performance.now() - sent, from: p.ip.src, type: p.icmp.type, code: p.icmp.code });
    }
  }
  const by = (type: number): (typeof got)[number] | undefined => got.find((g) => g.type === type);
  t.same(
    got.map((g) => [g.from, g.type, g.code]).sort(),
    [
      [0x0a000202, 3, 0],
      [0xc0000201, 11, 0],
      [0xc6336407, 0, 0],
    ].sort(),
    'net unreachable from the gateway, time exceeded from the router, the echo reply from the server',
  );
  t.ok(by(11)!.at >= 40, `time exceeded after the first link both ways (${by(11)!.at.toFixed(1)} ms)`);
  t.ok(by(0)!.at >= 100, `the reply after both links both ways (${by(0)!.at.toFixed(1)} ms)`);
});
