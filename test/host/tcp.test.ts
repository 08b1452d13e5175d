// Host TCP sockets (the addon's TCP calls through NodeHostNet): listen, accept, data both ways with
// backpressure, half-close, RST, on loopback; and in the netns topology of test/support/netns.ts
// (a child in vunet's namespace, test/host/fixtures/tcp-child.ts) how connects end: connected,
// refused (no ICMP), time exceeded from the first router for a TTL-1 SYN (what traceroute -T
// needs), and the host's own ARP/NDP failure as EHOSTUNREACH without an outside offender. A change
// of interest the epoll set refuses costs one look a turn, never a chain of microtasks.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Test } from 'tap';
import { hostnet } from '../../src/host/native.js';
import { silentLog } from '../../src/iface/log.js';
import { NodeHostNet } from '../../src/host/host-net.js';
import { EdgePoller } from '../../src/host/edge-poller.js';
import type { TcpSocket, TcpSocketEvents } from '../../src/nat/host.js';
import { canUseNetns, createTopology } from '../support/netns.js';

const CHILD = fileURLToPath(new URL('./fixtures/tcp-child.ts', import.meta.url));
const LOOP4 = Uint8Array.of(127, 0, 0, 1);

function events(over: Partial<TcpSocketEvents> = {}): TcpSocketEvents {
  return { connected: () => undefined, connectFailed: () => undefined, readable: () => undefined, writable: () => undefined, ...over };
}

const until = (cond: () => boolean, ms = 5000): Promise<void> =>
  new Promise((resolve, reject) => {
    const start = Date.now();
    const tick = (): void => {
      if (cond()) return resolve();
      if (Date.now() - start > ms) return reject(new Error('timed out'));
      setTimeout(tick, 5);
    };
    tick();
  });

/** A loopback connection to `port`, its accepted side attached with `handlers`, watching nothing,
 *  and settled (each socket's entry into the edge-triggered set raises one edge: a turn of the
 *  event loop delivers them); both close at the test's end. */
async function loopbackPair(t: Test, host: NodeHostNet, port: number, handlers: Partial<TcpSocketEvents>): Promise<{ server: TcpSocket; client: TcpSocket }> {
  const accepted: TcpSocket[] = [];
  const listener = host.listenTcp(4, LOOP4, port, (acc) => accepted.push(acc.attach(events(handlers))));
  t.teardown(() => {
    listener.close();
    for (const a of accepted) a.close(true);
  });
  let connected = false;
  const client = host.connectTcp(4, LOOP4, port, -1, events({ connected: () => (connected = true) }));
  t.teardown(() => client.close(true));
  await until(() => connected && accepted.length === 1);
  const server = accepted[0]!;
  server.watch(false, false);
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
  return { server, client };
}

t.test('listen, accept, data both ways with backpressure, half-close, RST (loopback)', async (t) => {
  const host = new NodeHostNet(silentLog);
  let server: TcpSocket | undefined;
  let peerPort = 0;
  const received: number[] = [];
  let serverEof = false;
  const listener = host.listenTcp(4, LOOP4, 0 + 47123, (acc) => {
    peerPort = acc.peerPort;
    t.same([...acc.peer], [127, 0, 0, 1], 'client address');
    server = acc.attach(
      events({
        readable: () => {
          const b = new Uint8Array(65536);
          for (;;) {
            const n = server!.read(b, 0, b.length);
            if (n > 0) received.push(...b.subarray(0, n));
            else {
              if (n === 0) serverEof = true;
              break;
            }
          }
        },
      }),
    );
    server.watch(true, false);
  });
  t.teardown(() => listener.close());
  let connected = false;
  let writable = 0;
  const client = host.connectTcp(4, LOOP4, 47123, -1, events({ connected: () => (connected = true), writable: () => writable++ }));
  await until(() => connected && server !== undefined);
  t.ok(peerPort > 0);
  // Write until the kernel buffers are full (the server does not read yet).
  server!.watch(false, false);
  const chunk = new Uint8Array(256 * 1024).fill(7);
  let total = 0;
  for (;;) {
    const n = client.write(chunk, 0, chunk.length);
    if (n === -hostnet.EAGAIN) break;
    t.ok(n > 0);
    total += n;
    if (total > 64 << 20) break;
  }
  t.ok(total > 0 && total < 64 << 20, `send buffer filled after ${total} bytes: -EAGAIN`);
  client.watch(false, true);
  server!.watch(true, false);
  await until(() => writable > 0, 10_000);
  t.pass('writable once the reader drained');
  client.shutdownWrite();
  await until(() => serverEof, 10_000);
  t.equal(received.length, total, 'every byte arrived, then EOF (half-close)');
  // The other direction still works after the half-close.
  t.equal(server!.write(Uint8Array.of(1, 2, 3), 0, 3), 3);
  const back = new Uint8Array(8);
  let n = -hostnet.EAGAIN;
  await until(() => (n = client.read(back, 0, 8)) !== -hostnet.EAGAIN);
  t.equal(n, 3, 'data toward the half-closed side');
  // RST: close with SO_LINGER 0; the peer reads -ECONNRESET.
  server!.close(true);
  await until(() => (n = client.read(back, 0, 8)) !== -hostnet.EAGAIN);
  t.equal(n, -hostnet.ECONNRESET, 'reset close → ECONNRESET');
  client.close(false);
});

t.test('listening on a used port throws EADDRINUSE', async (t) => {
  const host = new NodeHostNet(silentLog);
  const a = host.listenTcp(4, LOOP4, 47124, () => undefined);
  t.throws(() => host.listenTcp(4, LOOP4, 47124, () => undefined), { code: 'EADDRINUSE' });
  a.close();
});

const why = canUseNetns();
t.test('how connects end, in the namespace topology', { skip: why ?? false }, async (t) => {
  const topo = createTopology('hosttcp');
  const echo = [
    spawn('ip', ['netns', 'exec', topo.targetNs, 'socat', 'TCP4-LISTEN:7,fork,reuseaddr', 'PIPE'], { stdio: 'ignore' }),
    spawn('ip', ['netns', 'exec', topo.targetNs, 'socat', 'TCP6-LISTEN:7,fork,reuseaddr,ipv6only=1', 'PIPE'], { stdio: 'ignore' }),
  ];
  t.teardown(() => {
    for (const e of echo) e.kill('SIGTERM');
    topo.destroy();
  });
  // Both echo servers listening (socat's TCP4 and TCP6 sockets on port 7).
  await until(() => spawnSync('ip', ['netns', 'exec', topo.targetNs, 'ss', '-Hltn', 'sport = :7'], { encoding: 'utf8' }).stdout.trim().split('\n').length >= 2);
  const r = spawnSync(
    'ip',
    ['netns', 'exec', topo.vunetNs, process.execPath, '--import', 'tsx', CHILD, topo.target4, topo.target6, topo.nobody4, topo.nobody6],
    {
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  t.equal(r.status, 0, r.stderr);
  const o: Record<string, Record<string, unknown>> = {};
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const j = JSON.parse(line) as Record<string, unknown>;
    o[j.name as string] = j;
  }
  t.match(o['open4'], { outcome: 'connected' });
  t.match(o['open6'], { outcome: 'connected' });
  t.match(
    o['ttl1-4'],
    { outcome: 'failed', errno: hostnet.EHOSTUNREACH, type: 11, origin: hostnet.SO_EE_ORIGIN_ICMP, offender: topo.router1[0] },
    'TTL 1: time exceeded from router 1',
  );
  t.match(o['ttl2-4'], { outcome: 'failed', type: 11, offender: topo.router2[0] }, 'TTL 2: time exceeded from router 2');
  t.match(
    o['ttl1-6'],
    { outcome: 'failed', errno: hostnet.EHOSTUNREACH, type: 3, origin: hostnet.SO_EE_ORIGIN_ICMP6, offender: topo.router1[1] },
    'hop limit 1: time exceeded from router 1',
  );
  for (const n of ['refused4', 'refused6']) {
    t.match(o[n], { outcome: 'failed', errno: hostnet.ECONNREFUSED, type: undefined }, `${n}: RST, no error-queue entry`);
  }
  t.match(
    o['nobody4'],
    { outcome: 'failed', errno: hostnet.EHOSTUNREACH, type: 3, code: 1, offender: undefined },
    'unheld address on the link: our own host unreachable',
  );
  t.match(o['nobody6'], { outcome: 'failed', errno: hostnet.EHOSTUNREACH, type: 1, code: 3, offender: undefined }, 'IPv6: our own address unreachable');
});

t.test("a connected socket nobody watches costs no CPU (the connect's writability watch is turned off)", async (t) => {
  let afterEvents = 0;
  const host = new NodeHostNet(silentLog, { after: () => afterEvents++, failed: (err) => t.fail(String(err)), batch: () => undefined });
  const accepted: TcpSocket[] = [];
  const listener = host.listenTcp(4, LOOP4, 47125, (acc) => accepted.push(acc.attach(events())));
  t.teardown(() => listener.close());
  let connected = false;
  const s = host.connectTcp(4, LOOP4, 47125, -1, events({ connected: () => (connected = true) }));
  t.teardown(() => s.close(true));
  await until(() => connected && accepted.length === 1);
  // What the NAT does while the guest has not yet ACKed our SYN-ACK: nothing to read or write.
  s.watch(false, false);
  // Each socket's entry into the edge-triggered set raises one edge (its state then): a turn of
  // the event loop delivers both before the count starts (on a loaded machine they came later,
  // inside the idle second).
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
  const events0 = afterEvents;
  await new Promise((r) => setTimeout(r, 1000)); // time passing is the point: a spin would call back
  // A spinning watch calls back over and over. (Counted, not timed: CPU seconds on a loaded CI
  // machine say little.)
  t.ok(afterEvents - events0 <= 1, `no socket events meanwhile (${afterEvents - events0})`);
  for (const a of accepted) a.close(true);
});

t.test('data arriving while reads are off wakes nobody (the kernel filters it); turning them on reports what is there at once', async (t) => {
  let afterEvents = 0;
  const host = new NodeHostNet(silentLog, { after: () => afterEvents++, failed: (err) => t.fail(String(err)), batch: () => undefined });
  let readable = 0;
  const { server, client } = await loopbackPair(t, host, 47126, { readable: () => readable++ });
  const events0 = afterEvents;
  // What a flow whose guest window is full does: data keeps arriving, nobody needs to hear it.
  for (let i = 0; i < 5; i++) {
    t.equal(client.write(Uint8Array.of(i), 0, 1), 1);
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal(afterEvents - events0, 0, 'five arrivals, no event (with a filter in JavaScript: one wake each)');
  t.equal(readable, 0);
  server.watch(true, false);
  await until(() => readable > 0);
  t.equal(readable, 1, 'reads on: the queued data is reported once');
  t.equal(server.read(new Uint8Array(16), 0, 16), 5);
  t.equal(client.write(Uint8Array.of(9), 0, 1), 1);
  await until(() => readable > 1);
  t.pass('with reads on, an arrival is heard');
  // Writability likewise: off, the room a socket has raises nothing; on, it is reported.
  const w0 = afterEvents;
  let writable = 0;
  const c2 = host.connectTcp(4, LOOP4, 47126, -1, events({ connected: () => c2.watch(false, false), writable: () => writable++ }));
  t.teardown(() => c2.close(true));
  await until(() => afterEvents > w0);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(writable, 0, 'writes off: not told of room');
  c2.watch(false, true);
  await until(() => writable > 0);
  t.pass('writes on: told of the room there is');
});

t.test('an interest the epoll set refuses is looked at again on a later turn, not by a microtask', async (t) => {
  const host = new NodeHostNet(silentLog, { after: () => undefined, failed: (err) => t.fail(String(err)), batch: () => undefined });
  let looks = 0;
  const { server, client } = await loopbackPair(t, host, 47127, {
    // What the TCP NAT does when told it may read: it watches again. Refused again, that asks for
    // another look; bounded here so that a chain of them ends the test, not the run.
    readable: () => {
      if (++looks < 1000) server.watch(true, false);
    },
  });
  // epoll_ctl refuses every change (ENOMEM, the one refusal Linux has for an fd the set holds).
  const change = Object.getOwnPropertyDescriptor(EdgePoller.prototype, 'change')!;
  t.teardown(() => Object.defineProperty(EdgePoller.prototype, 'change', change));
  Object.defineProperty(EdgePoller.prototype, 'change', { ...change, value: (): number => -12 });
  server.watch(true, false);
  t.equal(looks, 0, 'no look within the call');
  let most = 0;
  for (let turn = 0; turn < 20; turn++) {
    const before = looks;
    await new Promise<void>((r) => setImmediate(r));
    most = Math.max(most, looks - before);
  }
  t.equal(most, 1, 'one look a turn, however often the owner watches again from it');
  t.ok(looks >= 10, `the owner keeps looking while the set refuses (${looks} looks in 20 turns)`);
  // The set takes changes again: the look pending arms reads, and then only data is heard.
  Object.defineProperty(EdgePoller.prototype, 'change', change);
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
  const armed = looks;
  await new Promise((r) => setTimeout(r, 20));
  t.equal(looks, armed, 'no more looks once the change was taken');
  t.equal(client.write(Uint8Array.of(1), 0, 1), 1);
  await until(() => looks > armed);
  t.pass('once the set takes the change, data is heard');
});

t.test('scatter lists: writev and peekInto over spans of several views or of one (looked up once); bad spans refused', async (t) => {
  const host = new NodeHostNet(silentLog);
  let server: TcpSocket | undefined;
  const listener = host.listenTcp(4, LOOP4, 47124, (acc) => {
    server = acc.attach(events());
  });
  t.teardown(() => listener.close());
  let connected = false;
  const client = host.connectTcp(4, LOOP4, 47124, -1, events({ connected: () => (connected = true) }));
  t.teardown(() => {
    client.close(false);
    server?.close(false);
  });
  await until(() => connected && server !== undefined);
  const a = Uint8Array.from({ length: 64 }, (_, i) => i);
  const b = Uint8Array.from({ length: 64 }, (_, i) => 100 + i);
  // Two views (one lookup per span), then one view for every span.
  t.equal(client.writev!([a, b, a], Float64Array.of(0, 10, 60), Uint32Array.of(5, 3, 4), 3), 12);
  t.equal(client.writev!([b, b], Float64Array.of(0, 62), Uint32Array.of(2, 2), 2), 4);
  const sent = [0, 1, 2, 3, 4, 110, 111, 112, 60, 61, 62, 63, 100, 101, 162, 163];
  const q = server!.queue!;
  await until(() => q.queued() === sent.length);
  const into = new Uint8Array(32);
  const other = new Uint8Array(8);
  t.equal(q.peekInto(0, [into, into, into], Float64Array.of(0, 10, 20), Uint32Array.of(4, 4, 8), 3), 16, 'peeked into one view');
  t.same([...into.subarray(0, 4), ...into.subarray(10, 14), ...into.subarray(20, 28)], sent);
  t.equal(q.peekInto(4, [other, into], Float64Array.of(0, 30), Uint32Array.of(6, 2), 2), 8, 'peeked into two, from offset 4');
  t.same([...other.subarray(0, 6), ...into.subarray(30, 32)], sent.slice(4, 12));
  // Spans are checked before the call (so the fd need not be open): a span past its view's end,
  // in either form, and a view that is not a Uint8Array are refused.
  t.throws(() => hostnet.writev(-1, a, Float64Array.of(0, 60), Uint32Array.of(4, 5), 2), RangeError, 'one view: the second span ends past it');
  t.throws(() => hostnet.writev(-1, [a, b], Float64Array.of(0, 60), Uint32Array.of(4, 5), 2), RangeError, 'per span: likewise');
  t.throws(
    () => hostnet.peekv(-1, new Uint16Array(8) as unknown as Uint8Array, Float64Array.of(0), Uint32Array.of(2), 1),
    TypeError,
    'a view that is not a Uint8Array',
  );
  t.equal(hostnet.writev(-1, a, Float64Array.of(0, 60), Uint32Array.of(4, 4), 2), -9, 'good spans reach the call (EBADF)');
});
