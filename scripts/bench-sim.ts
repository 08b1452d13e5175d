// What a packet costs on the simulated path against the NAT path, in the same process and run:
// `npx tsx scripts/bench-sim.ts [round trips]`.
//
// One vunet runs in-process with a topology (gateway — r1 — target, links without delay, UDP echo
// on target:7) and a guest played by the vhost-user test frontend, which sends UDP datagrams in
// batches of 32 and waits for their echoes:
// - simulated: to the target's echo port, answered inside vunet (two routers each way);
// - NAT: to the gateway's port P, which the NAT maps to the host's loopback, where a UDP echo
//   server of this process answers (host sockets, the kernel's loopback, the echo server).
// Printed: CPU µs per round trip (user + system, the whole process: guest frontend, vunet and, for
// the NAT, the echo server) and wall µs, each path, and their ratio.
import { createSocket } from 'node:dgram';
import { buildTopology } from '../src/sim/topology.js';
import { GW_IP, arpReply, arpRequest, udpFrame } from '../test/support/packets.js';
import { startHarness } from '../test/support/vunet-harness.js';
import type { Harness } from '../test/support/vunet-harness.js';

const ROUND_TRIPS = Number(process.argv[2] ?? 40_000);
const BATCH = 32;
const TARGET = 0xc633640a; // 198.51.100.10

async function run(h: Harness, dst: number, port: number, n: number): Promise<{ cpuUs: number; wallUs: number }> {
  const payload = new Uint8Array(64);
  const frames = Array.from({ length: BATCH }, (_, i) => udpFrame(40000 + i, port, payload, { dst }));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let done = 0;
  while (done < n) {
    for (const f of frames) h.send(f);
    let back = 0;
    const deadline = Date.now() + 5000;
    while (back < BATCH && Date.now() < deadline) {
      for (const f of await h.receive(1, 50)) {
        if (f[12] === 0x08 && f[13] === 0x06 && f[21] === 1)
          h.send(arpReply()); // vunet probes the guest's address
        else if (f[23] === 17) back++;
      }
    }
    if (back < BATCH) throw new Error(`only ${back} of ${BATCH} echoes came back (to ${dst.toString(16)}:${port}, after ${done})`);
    done += BATCH;
  }
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / done, wallUs: ((performance.now() - t0) * 1000) / done };
}

async function main(): Promise<void> {
  const echo = createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  await new Promise<void>((resolve) => echo.bind(0, '127.0.0.1', resolve));
  const echoPort = echo.address().port;
  const topology = buildTopology({
    nat: true,
    routers: { r1: { addresses: ['203.0.113.1'] } },
    hosts: { target: { addresses: ['198.51.100.10'], services: [{ udp: 7, serve: 'echo' }] } },
    links: [{ between: ['gateway', 'r1'] }, { between: ['r1', 'target'] }],
  });
  const h = await startHarness({}, undefined, { topology });
  try {
    h.send(arpRequest(GW_IP));
    await h.receive(1, 2000);
    // Warm both paths, then measure each twice, alternating.
    await run(h, TARGET, 7, 4096);
    await run(h, GW_IP, echoPort, 4096);
    const sim: { cpuUs: number; wallUs: number }[] = [];
    const nat: { cpuUs: number; wallUs: number }[] = [];
    for (let i = 0; i < 2; i++) {
      sim.push(await run(h, TARGET, 7, ROUND_TRIPS));
      nat.push(await run(h, GW_IP, echoPort, ROUND_TRIPS));
    }
    const fmt = (r: { cpuUs: number; wallUs: number }): string => `${r.cpuUs.toFixed(2)} µs CPU, ${r.wallUs.toFixed(2)} µs wall`;
    for (let i = 0; i < 2; i++) {
      console.log(`run ${i + 1}: simulated ${fmt(sim[i]!)} | NAT ${fmt(nat[i]!)} | CPU simulated/NAT ${(sim[i]!.cpuUs / nat[i]!.cpuUs).toFixed(2)}`);
    }
  } finally {
    await h.close();
    echo.close();
  }
}

await main();
