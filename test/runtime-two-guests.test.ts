// Two guests on one vunet (--socket twice), played by the library's test frontend: when one goes
// away, its NAT flows end (its connection reset toward the host, its UDP flow closed) and the
// other guest's stay.
import dgram from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { GUEST_IP, GUEST_MAC, GW_IP, arpRequest, tcpFrame, udpFrame } from './support/packets.js';
import { connectGuest, startHarness } from './support/vunet-harness.js';
import { until } from './support/wait.js';

const SYN = 0x02;
const GUEST2_IP = GUEST_IP + 1; // 10.0.2.16
const GUEST2_MAC = Uint8Array.from([...GUEST_MAC.subarray(0, 5), GUEST_MAC[5]! + 1]);

t.test('a guest that leaves takes its NAT flows with it; the other keeps its own', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-two-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const udpServer = dgram.createSocket('udp4');
  const udpFrom = new Set<number>();
  udpServer.on('message', (_m, rinfo) => udpFrom.add(rinfo.port));
  await new Promise<void>((r) => udpServer.bind(0, '127.0.0.1', r));
  t.teardown(() => udpServer.close());
  const conns: { socket: net.Socket; ended: boolean }[] = [];
  const tcpServer = net.createServer((socket) => {
    const c = { socket, ended: false };
    socket.on('error', () => undefined);
    socket.on('close', () => (c.ended = true));
    conns.push(c);
  });
  await new Promise<void>((r) => tcpServer.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of conns) c.socket.destroy();
    tcpServer.close();
  });
  const udpPort = udpServer.address().port;
  const tcpPort = (tcpServer.address() as net.AddressInfo).port;

  const h = await startHarness({}, undefined, { moreSockets: [join(dir, 'guest2.sock')] });
  t.teardown(() => h.close());
  const g2 = await connectGuest(join(dir, 'guest2.sock'));
  const guests = [
    { g: h, ip: GUEST_IP, mac: GUEST_MAC, port: 41001 },
    { g: g2, ip: GUEST2_IP, mac: GUEST2_MAC, port: 41002 },
  ];
  for (const { g, ip, mac, port } of guests) {
    g.send(arpRequest(GW_IP, ip, mac)); // the switch and the ARP cache learn it
    g.send(udpFrame(port, udpPort, Uint8Array.of(1, 2, 3), { src: ip, srcMac: mac }));
    g.send(tcpFrame(port, tcpPort, 1000, 0, SYN, undefined, { src: ip, srcMac: mac, mss: 1460 }));
  }
  await until(() => udpFrom.size === 2 && conns.length === 2, 'both guests reach the host over UDP and TCP', 5000);
  const g1 = '10.0.2.15';
  const g2ip = '10.0.2.16';
  t.same(
    h.vunet
      .flows()
      .map((f) => f.guest.split(':')[0])
      .sort(),
    [g1, g1, g2ip, g2ip],
    'a TCP and a UDP flow for each guest',
  );

  g2.fe.close(); // guest 2 goes away
  await until(() => h.vunet.flows().every((f) => f.guest.startsWith(`${g1}:`)), "guest 2's flows end", 5000);
  t.same(
    h.vunet
      .flows()
      .map((f) => f.proto)
      .sort(),
    ['tcp', 'udp'],
    "guest 1's stay",
  );
  await until(() => conns.filter((c) => c.ended).length === 1, "the host peer of guest 2's connection sees it end", 5000);
  t.notOk(conns[0]!.ended && conns[1]!.ended, "guest 1's connection is still open");
});
