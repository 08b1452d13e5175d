// Tests of the host-socket addon (src/host/addon/*.cc, src/host/native.ts). Argument checks run here;
// everything that sends packets runs in child processes inside network namespaces this test makes
// (test/host/fixtures/hostnet-child.ts prints what it saw, the assertions are here), so every
// packet stays on this machine:
//   lo       one namespace, only `lo` up: ping / raw / UDP on 127.0.0.1 and ::1, the Poller
//   routed   H —veth— R —veth— F; the child runs in H:
//              H h0 10.200.1.1/24  fd00:200:1::1/64   default via R
//              R r0 10.200.1.254   fd00:200:1::fe     forwarding on, ICMP rate limits off
//              R r1 10.200.2.254   fd00:200:2::fe     MTU 1280
//              F f0 10.200.2.1     fd00:200:2::1      MTU 1280, default via R
//            10.200.9.1 / fd00:200:9::1 have no route at R; 10.200.1.77 / fd00:200:1::77 are
//            on H's link but nobody answers ARP / NDP for them.
//   noraw    the lo namespace again, without CAP_NET_RAW (setpriv)
import t from 'tap';
import type { Test } from 'tap';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInThisContext } from 'node:vm';
import { hostnet, newErrInfo, newRecvInfo } from '../../src/host/native.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/hostnet-child.ts', import.meta.url));
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

const PREFIX = `vunet-hn-${process.pid}`;
const NS = { lo: `${PREFIX}-lo`, h: `${PREFIX}-h`, r: `${PREFIX}-r`, f: `${PREFIX}-f` };

function fdFlags(fd: number): number {
  const m = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m?.[1]) throw new Error(`no flags for fd ${fd}`);
  return parseInt(m[1], 8);
}

const nonblockCloexec = (flags: number): boolean => (flags & (O_NONBLOCK | O_CLOEXEC)) === (O_NONBLOCK | O_CLOEXEC);

t.test('the functions are read from a fast-mode object', (t) => {
  // The addon's exports object is a dictionary (76 properties added one by one): optimized code
  // would read each function from it with a generic property load, once per call.
  setFlagsFromString('--allow-natives-syntax');
  const hasFastProperties = runInThisContext('(o) => %HasFastProperties(o)') as (o: object) => boolean;
  t.equal(hasFastProperties(hostnet), true);
  t.end();
});

t.test('argument checks and socket flags (no packets)', async (t) => {
  const fd = hostnet.openUdp(4);
  t.ok(nonblockCloexec(fdFlags(fd)), 'openUdp: O_NONBLOCK | O_CLOEXEC');
  t.throws(() => hostnet.openUdp(5 as 4), RangeError, 'family 5');
  t.throws(() => hostnet.bind(fd, 4, new Uint8Array(3), 0), RangeError, 'a 3-byte address');
  t.throws(() => hostnet.bind(fd, 6, new Uint8Array(4), 0), RangeError, 'IPv6 needs 16 bytes');
  t.throws(() => hostnet.bind(fd, 4, new Uint8Array(4), 65536), RangeError, 'port 65536');
  t.throws(() => hostnet.setTtl(fd, 4, 256), RangeError, 'ttl 256');
  t.throws(() => hostnet.recvFrom(fd, 4, new Uint8Array(8), 0, 8, {} as never), TypeError, 'out without addr');
  const short = { ...newRecvInfo(), addr: new Uint8Array(4) };
  t.throws(() => hostnet.recvFrom(fd, 4, new Uint8Array(8), 0, 8, short), RangeError, 'out.addr of 4 bytes');
  t.throws(() => hostnet.recvFrom(fd, 4, new Uint8Array(8), 4, 8, newRecvInfo()), RangeError, 'range past the buffer');
  t.throws(() => hostnet.recvErr(fd, 4, new Uint8Array(8), 0, 8, newRecvInfo() as never), TypeError, 'recvErr needs an ErrInfo');
  t.throws(() => hostnet.setIcmpFilter(fd, 4, [256]), RangeError, 'ICMP type 256');

  // A 16-byte address is accepted for IPv4 (its first 4 bytes), as recvFrom reports them.
  const any16 = new Uint8Array(16);
  t.equal(hostnet.bind(fd, 4, any16, 0), 0, 'bind 0.0.0.0 given as 16 bytes');
  const name = hostnet.getsockname(fd, 4);
  t.equal(name.addr.length, 4, 'getsockname: 4-byte IPv4 address');
  t.ok(name.port > 0, 'an ephemeral port');
  t.equal(hostnet.bind(fd, 4, any16, 0), -22, 'bind twice: -EINVAL');
  t.equal(hostnet.recvFrom(fd, 4, new Uint8Array(8), 0, 8, newRecvInfo()), -hostnet.EAGAIN, 'empty: -EAGAIN');
  t.equal(hostnet.recvErr(fd, 4, new Uint8Array(8), 0, 8, newErrInfo()), -hostnet.EAGAIN, 'empty error queue: -EAGAIN');
  t.equal(hostnet.close(fd), 0, 'close');
  t.equal(hostnet.close(fd), -9, 'close again: -EBADF');
  t.equal(hostnet.sendTo(fd, 4, new Uint8Array(1), 0, 1, null, 0), -9, 'sendTo on a closed fd: -EBADF');
  const err = (() => {
    try {
      hostnet.getsockname(fd, 4);
      return null;
    } catch (e) {
      return e as { code?: string; errno?: number; syscall?: string };
    }
  })();
  t.match(err, { code: 'EBADF', errno: -9, syscall: 'getsockname' }, 'setup calls throw errno errors');

  const fd6 = hostnet.openUdp(6);
  t.ok(nonblockCloexec(fdFlags(fd6)), 'openUdp(6): O_NONBLOCK | O_CLOEXEC');
  t.equal(hostnet.close(fd6), 0);
});

t.test('sendMany: one sendmmsg, each datagram with its own bytes and TTL (host loopback)', async (t) => {
  const lo = Uint8Array.of(127, 0, 0, 1);
  const rx = hostnet.openUdp(4);
  const tx = hostnet.openUdp(4);
  t.teardown(() => {
    hostnet.close(rx);
    hostnet.close(tx);
  });
  t.equal(hostnet.bind(rx, 4, lo, 0), 0);
  hostnet.setRecvTtl(rx, 4, true);
  t.equal(hostnet.connect(tx, 4, lo, hostnet.getsockname(rx, 4).port), 0);
  const buf = new TextEncoder().encode('..alpha..beta.gamma');
  const offsets = Int32Array.of(99, 2, 9, 14);
  const lengths = Int32Array.of(0, 5, 4, 5);
  const ttls = Int32Array.of(0, 7, -1, 200);
  t.equal(hostnet.sendMany(tx, 4, buf, offsets, lengths, ttls, 1, 3), 3, 'three sent, from entry 1');
  const got: [string, number][] = [];
  const b = new Uint8Array(64);
  const info = newRecvInfo();
  for (let n; (n = hostnet.recvFrom(rx, 4, b, 0, b.length, info)) >= 0;) got.push([new TextDecoder().decode(b.subarray(0, n)), info.ttl]);
  t.same(
    got,
    [
      ['alpha', 7],
      ['beta', 64],
      ['gamma', 200],
    ],
    'in order, each with its TTL (-1: the default)',
  );
  t.equal(hostnet.SEND_MANY_MAX, 64);
  t.throws(() => hostnet.sendMany(tx, 4, buf, offsets, lengths, ttls, 2, 3), RangeError, 'entries past the arrays');
  t.throws(() => hostnet.sendMany(tx, 4, buf, offsets, lengths, ttls, 0, 1), RangeError, 'a datagram outside buf');
  t.throws(() => hostnet.sendMany(tx, 4, buf, offsets, lengths, Int32Array.of(0, 0, 0, 256), 3, 1), RangeError, 'ttl 256');
  t.throws(() => hostnet.sendMany(tx, 4, buf, offsets, lengths, ttls, 1, 0), RangeError, 'count 0');
  t.throws(() => hostnet.sendMany(tx, 4, buf, Array.from(offsets) as unknown as Int32Array, lengths, ttls, 1, 1), TypeError, 'offsets not an Int32Array');
  t.equal(hostnet.sendMany(99999, 4, buf, offsets, lengths, ttls, 1, 1), -9, 'a bad fd: -EBADF');
});

// ---- namespaces ----------------------------------------------------------------------------

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function sysctl(ns: string, ...settings: string[]): void {
  ip('netns', 'exec', ns, 'sysctl', '-qw', ...settings);
}

function deleteNamespaces(): void {
  for (const ns of Object.values(NS)) spawnSync('ip', ['netns', 'delete', ns], { stdio: 'ignore' });
}

/** Why the namespace tests cannot run here, or null. */
function namespaceSkipReason(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (ip netns, raw sockets)';
  const probe = `${PREFIX}-probe`;
  const r = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return `ip netns add failed: ${r.error?.message ?? r.stderr.trim()}`;
  spawnSync('ip', ['netns', 'delete', probe], { stdio: 'ignore' });
  return null;
}

function setupLoopback(): void {
  ip('netns', 'add', NS.lo);
  ip('-n', NS.lo, 'link', 'set', 'lo', 'up');
}

function setupRouted(): void {
  for (const ns of [NS.h, NS.r, NS.f]) {
    ip('netns', 'add', ns);
    ip('-n', ns, 'link', 'set', 'lo', 'up');
    // No DAD on the links made below: a tentative link-local address keeps a router from sending
    // neighbor solicitations for what it forwards (it needs a link-local source), which delayed
    // the first routed IPv6 echo by 2 s now and then.
    sysctl(ns, 'net.ipv6.conf.default.accept_dad=0');
  }
  ip('link', 'add', 'h0', 'netns', NS.h, 'type', 'veth', 'peer', 'name', 'r0', 'netns', NS.r);
  ip('link', 'add', 'r1', 'netns', NS.r, 'mtu', '1280', 'type', 'veth', 'peer', 'name', 'f0', 'netns', NS.f, 'mtu', '1280');
  const links: Array<[string, string, string, string]> = [
    [NS.h, 'h0', '10.200.1.1/24', 'fd00:200:1::1/64'],
    [NS.r, 'r0', '10.200.1.254/24', 'fd00:200:1::fe/64'],
    [NS.r, 'r1', '10.200.2.254/24', 'fd00:200:2::fe/64'],
    [NS.f, 'f0', '10.200.2.1/24', 'fd00:200:2::1/64'],
  ];
  // Up first, then addresses: an IPv6 address added (nodad) while its link is down did not
  // answer neighbor solicitations at first on this kernel.
  for (const [ns, dev] of links) ip('-n', ns, 'link', 'set', dev, 'up');
  for (const [ns, dev, v4, v6] of links) {
    ip('-n', ns, 'addr', 'add', v4, 'dev', dev);
    ip('-n', ns, 'addr', 'add', v6, 'dev', dev, 'nodad');
  }
  ip('-n', NS.h, 'route', 'add', 'default', 'via', '10.200.1.254');
  ip('-n', NS.h, '-6', 'route', 'add', 'default', 'via', 'fd00:200:1::fe');
  ip('-n', NS.f, 'route', 'add', 'default', 'via', '10.200.2.254');
  ip('-n', NS.f, '-6', 'route', 'add', 'default', 'via', 'fd00:200:2::fe');
  sysctl(NS.r, 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0');
  // One probe, 100 ms: an unanswered neighbor fails fast.
  sysctl(
    NS.h,
    'net.ipv4.neigh.h0.mcast_solicit=1',
    'net.ipv4.neigh.h0.retrans_time_ms=100',
    'net.ipv6.neigh.h0.mcast_solicit=1',
    'net.ipv6.neigh.h0.retrans_time_ms=100',
  );
}

/** Waits until every veth end is operationally up: until then (the kernel's linkwatch runs up to
 *  1 s late) the device still has its no-op qdisc and drops what is sent. */
async function waitLinksUp(): Promise<void> {
  const ends: Array<[string, string]> = [
    [NS.h, 'h0'],
    [NS.r, 'r0'],
    [NS.r, 'r1'],
    [NS.f, 'f0'],
  ];
  const deadline = Date.now() + 5000;
  for (const [ns, dev] of ends) {
    for (;;) {
      const out = execFileSync('ip', ['-n', ns, '-o', 'link', 'show', 'dev', dev], { encoding: 'utf8' });
      if (/ state UP /.test(out)) break;
      if (Date.now() > deadline) throw new Error(`${dev} in ${ns} never came up: ${out}`);
      await sleep(20);
    }
  }
}

type Observations = Record<string, Record<string, unknown> & { error?: string }>;

/** Runs the child in `ns` (optionally under a wrapper command) and parses what it printed. */
function runChild(ns: string, mode: string, env: Record<string, string> = {}, wrapper: string[] = []): Promise<Observations> {
  const args = ['netns', 'exec', ns, ...wrapper, process.execPath, '--import', 'tsx', CHILD, mode];
  return new Promise((resolve, reject) => {
    execFile('ip', args, { cwd: ROOT, env: { ...process.env, ...env }, timeout: 30_000, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`child ${mode} failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        resolve(JSON.parse(stdout) as Observations);
      } catch {
        reject(new Error(`child ${mode} printed no JSON:\n${stdout}\n${stderr}`));
      }
    });
  });
}

const skipReason = namespaceSkipReason();

t.test('in network namespaces', { skip: skipReason ?? false }, async (t) => {
  deleteNamespaces(); // leftovers of a crashed run with the same pid
  process.on('exit', deleteNamespaces); // teardown does not run when the process dies early
  t.teardown(deleteNamespaces);

  setupLoopback();
  // Each run is marked handled at once and awaited below: a child failing while the routed
  // namespaces are still being made must not be an unhandled rejection.
  const loRun = runChild(NS.lo, 'lo');
  loRun.catch(() => {});
  const haveSetpriv = spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
  const norawRun = haveSetpriv ? runChild(NS.lo, 'noraw', {}, ['setpriv', '--inh-caps=-net_raw', '--bounding-set=-net_raw']) : null;
  norawRun?.catch(() => {});
  setupRouted();
  await waitLinksUp();
  const routedRun = runChild(NS.h, 'routed', {
    FAR4: '10.200.2.1',
    FAR6: 'fd00:200:2::1',
    UNROUTABLE4: '10.200.9.1',
    UNROUTABLE6: 'fd00:200:9::1',
    SILENT4: '10.200.1.77',
    SILENT6: 'fd00:200:1::77',
  });
  const [lo, routed, noraw] = await Promise.all([loRun, routedRun, norawRun]);

  /** One subtest per scenario; a scenario that threw in the child fails with its stack. */
  const scenario = (obs: Observations, name: string, check: (t: Test, o: Record<string, unknown>) => void): void => {
    void t.test(name, async (t) => {
      const o = obs[name];
      if (!o) return t.fail(`no result for ${name}`);
      if (typeof o === 'object' && 'error' in o) return t.fail(`${name} threw in the child:\n${o.error}`);
      check(t, o);
    });
  };

  // -- ping sockets on loopback
  t.match(lo.pingOff, /^EACCES\/socket\//, 'a fresh namespace refuses ping sockets (EACCES: ping_group_range "1 0")');
  t.match(lo.pingOff6, /^EACCES\/socket\//, '... IPv6 ping sockets too (same sysctl)');
  for (const [name, family, replyType, from] of [
    ['ping4', 4, 0, '127.0.0.1'],
    ['ping6', 6, 129, '0:0:0:0:0:0:0:1'],
  ] as const) {
    scenario(lo, name, (t, o) => {
      t.ok(nonblockCloexec(o.flags as number), 'O_NONBLOCK | O_CLOEXEC');
      t.equal(o.beforeBind, 0, 'no identifier before bind');
      t.equal(o.bound, 0, 'bind to identifier 4321');
      t.equal(o.boundPort, 4321, 'getsockname port = identifier');
      t.equal(o.addrLength, family === 4 ? 4 : 16, 'getsockname address length');
      t.equal(o.sent, 18, 'request sent');
      t.equal(o.n, 18, 'reply of the same size');
      t.equal(o.type, replyType, 'echo reply, no IP header before it');
      t.equal(o.code, 0);
      t.equal(o.id, 4321, 'identifier rewritten by the kernel (0x1234 sent)');
      t.equal(o.seq, 7, 'sequence kept');
      t.equal(o.payload, 'vunet ping', 'payload echoed');
      t.equal(o.from, from, 'source address');
      t.equal(o.port, 0, 'no port for ICMP');
      t.equal(o.ttl, 64, 'TTL reported (IP_RECVTTL / IPV6_RECVHOPLIMIT)');
      t.equal(o.sameAddrObject, true, 'out.addr written in place');
      t.equal(o.again, -hostnet.EAGAIN, 'then -EAGAIN');
    });
  }

  // -- raw sockets on loopback
  scenario(lo, 'raw4', (t, o) => {
    t.ok(nonblockCloexec(o.flags as number), 'O_NONBLOCK | O_CLOEXEC');
    t.equal(o.firstFirstByte, 0x45, 'IPv4 header included');
    t.equal(o.firstType, 8, 'unfiltered: our own request is seen first');
    t.equal(o.firstTtl, 64, 'IP_RECVTTL on a raw socket');
    t.equal(o.secondType, 0, 'then the reply');
    t.equal(o.headerLength, 20);
    t.equal(o.filteredLen, 36, 'filtered: 20-byte header + 16-byte ICMP message');
    t.equal(o.ipVersion, 4);
    t.equal(o.ipTtl, 64, 'TTL in the header');
    t.equal(o.ipProtocol, 1);
    t.equal(o.type, 0, 'with ICMP_FILTER only the reply comes');
    t.equal(o.id, 0x5a5a, 'raw sockets keep our identifier');
    t.equal(o.seq, 2);
    t.equal(o.checksumOk, true, 'reply checksum verifies');
    t.equal(o.from, '127.0.0.1');
    t.match(o.filterOnPing, /^ENOPROTOOPT\/setsockopt\//, 'setIcmpFilter throws on a ping socket');
  });
  scenario(lo, 'raw6', (t, o) => {
    t.ok(nonblockCloexec(o.flags as number), 'O_NONBLOCK | O_CLOEXEC');
    t.equal(o.firstFirstByte, 128, 'no IPv6 header: our own request first (type 128)');
    t.equal(o.firstTtl, 64, 'hop limit via IPV6_RECVHOPLIMIT');
    t.equal(o.secondType, 129, 'then the reply');
    t.equal(o.filteredLen, 16, 'filtered: the bare 16-byte ICMPv6 message');
    t.equal(o.type, 129, 'with ICMP6_FILTER only the reply comes');
    t.equal(o.id, 0x5a5a);
    t.equal(o.seq, 2);
    t.equal(o.ttl, 64);
    t.equal(o.from, '0:0:0:0:0:0:0:1');
    t.match(o.filterOnPing, /^ENOPROTOOPT\/setsockopt\//, 'setIcmpFilter throws on a ping socket');
  });
  if (noraw) {
    t.match(noraw.raw4, /^EPERM\/socket\//, 'raw IPv4 without CAP_NET_RAW: EPERM');
    t.match(noraw.raw6, /^EPERM\/socket\//, 'raw IPv6 without CAP_NET_RAW: EPERM');
  } else {
    t.pass('raw sockets without CAP_NET_RAW not checked: setpriv not installed', { skip: true });
  }

  // -- UDP on loopback
  for (const [name, origin, type, code, addr] of [
    ['udpClosed4', hostnet.SO_EE_ORIGIN_ICMP, 3, 3, '127.0.0.1'],
    ['udpClosed6', hostnet.SO_EE_ORIGIN_ICMP6, 1, 4, '0:0:0:0:0:0:0:1'],
  ] as const) {
    scenario(lo, name, (t, o) => {
      const err = o.err as Record<string, unknown>;
      t.equal(o.sent, 11);
      t.equal(o.first, 'ECONNREFUSED', 'recvFrom reports the pending error once');
      t.match(
        err,
        { n: 11, errno: 'ECONNREFUSED', origin, type, code, info: 0, offender: addr, dst: addr, dstPort: o.closedPort },
        'port unreachable in the error queue',
      );
      t.same(err.payloadHead, Array.from(new TextEncoder().encode('knock kn')), 'payload: our UDP payload');
      t.equal(o.afterErr, 'EAGAIN', 'error queue drained');
      t.equal(o.afterRecv, 'EAGAIN', 'no error pending any more');
      t.equal(o.sendPending, 'ECONNREFUSED', 'a pending error fails the next sendTo instead...');
      t.equal(o.rxAfterPending, 'EAGAIN', '... which sends nothing');
      t.equal(o.sendAgain, 4, 'the send after it goes out');
      t.equal(o.rxAfterAgain, 4, 'and arrives');
      t.equal(o.errAfterSendType, type, 'the error stays queued for recvErr');
    });
  }
  for (const [name, from] of [
    ['udpEcho4', '127.0.0.1'],
    ['udpEcho6', '0:0:0:0:0:0:0:1'],
  ] as const) {
    scenario(lo, name, (t, o) => {
      t.ok(nonblockCloexec(o.flags as number), 'O_NONBLOCK | O_CLOEXEC');
      t.equal(o.boundA, 0);
      t.equal(o.boundB, 0);
      t.equal(o.emptyB, 'EAGAIN', 'empty socket: -EAGAIN');
      t.equal(o.emptyErr, 'EAGAIN', 'empty error queue: -EAGAIN');
      t.equal(o.untouched, true, 'out untouched on -EAGAIN');
      t.equal(o.sent, 11);
      t.same(o.atB, { from, port: o.portA, ttl: 64, text: 'hello vunet' }, 'datagram, source and TTL');
      t.equal(o.replied, 11, 'reply sent to the address recvFrom filled in');
      t.match(o.atA, { from, ttl: -1, text: 'HELLO VUNET' }, 'reply arrives (no TTL without setRecvTtl)');
      t.equal(o.truncN, 5, 'short buffer: 5 bytes');
      t.equal(o.truncated, true, '... flagged truncated');
      t.equal(o.connected, 0, 'connect');
      t.equal(o.sentConnected, 0, 'zero-length datagram on the connected socket (addr null)');
      t.equal(o.zeroN, 0, 'received as 0 bytes');
      t.equal(o.zeroTruncated, false);
      t.equal(o.sameAddrObject, true, 'one RecvInfo reused throughout');
    });
  }
  for (const [family, type, code] of [
    [4, 3, 3],
    [6, 1, 4],
  ] as const) {
    const err = `err type ${type} code ${code}`;
    void t.test(`poller${family}`, async (t) => {
      t.same(
        lo[`poller${family}`],
        [
          'cb 0 1', // readable: (0, POLL_READABLE)
          'data 10',
          'EAGAIN',
          '--',
          'cb -9 0', // error queue (with a datagram waiting too): (UV_EBADF, 0), poller stopped
          err,
          'data 3',
          'EAGAIN',
          '--', // stopped: a new datagram goes unnoticed
          'start',
          'cb 0 1',
          'data 5',
          'EAGAIN',
          '--',
          'cb -9 0', // an error alone: the same
          err,
          'EAGAIN',
        ],
        'Poller: readable is (0, 1); an error is (-9, 0) and stops the poller until start()',
      );
    });
    void t.test(`pollerPri${family}`, async (t) => {
      t.same(
        lo[`pollerPri${family}`],
        [
          'cb 0 1',
          'data 10',
          'EAGAIN',
          '--',
          'cb 0 9', // error + datagram: (0, READABLE | PRIORITIZED), poller still running
          err,
          'data 3',
          'EAGAIN',
          '--',
          'cb 0 1', // so the next datagram is seen at once
          'data 5',
          'EAGAIN',
          'start',
          '--',
          'cb 0 8', // an error alone: (0, PRIORITIZED)
          err,
          'EAGAIN',
        ],
        'SO_SELECT_ERR_QUEUE + POLL_PRIORITIZED: errors are ordinary events, the poller keeps running',
      );
    });
  }
  for (const name of ['noRoute4', 'noRoute6']) {
    scenario(lo, name, (t, o) => {
      t.equal(o.sent, 'ENETUNREACH', 'no route: sendTo fails at once');
      t.same(o.err, { n: 'EAGAIN' }, 'nothing queued');
    });
  }

  // -- routed: echo and ICMP errors from the router
  scenario(routed, 'echo4', (t, o) => t.match(o, { sent: 11, n: 11, type: 0, from: '10.200.2.1', ttl: 63 }, 'echo through R, TTL 63'));
  scenario(routed, 'echo6', (t, o) => t.match(o, { sent: 11, n: 11, type: 129, from: 'fd00:200:2:0:0:0:0:1', ttl: 63 }, 'echo through R, hop limit 63'));
  const routerV4 = '10.200.1.254';
  const routerV6 = 'fd00:200:1:0:0:0:0:fe';
  const ICMP = hostnet.SO_EE_ORIGIN_ICMP;
  const ICMP6 = hostnet.SO_EE_ORIGIN_ICMP6;
  const errCases: Array<[string, Record<string, unknown>, string]> = [
    [
      'unroutable4',
      { errno: 'ENETUNREACH', origin: ICMP, type: 3, code: 0, offender: routerV4, dst: '10.200.9.1', dstPort: 0 },
      'no route at R: net unreachable from R',
    ],
    [
      'unroutable6',
      { errno: 'ENETUNREACH', origin: ICMP6, type: 1, code: 0, offender: routerV6, dst: 'fd00:200:9:0:0:0:0:1', dstPort: 0 },
      'no route at R: ICMPv6 no route from R',
    ],
    ['ttl4', { errno: 'EHOSTUNREACH', origin: ICMP, type: 11, code: 0, offender: routerV4, dst: '10.200.2.1', dstPort: 0 }, 'IP_TTL 1: time exceeded from R'],
    [
      'ttl6',
      { errno: 'EHOSTUNREACH', origin: ICMP6, type: 3, code: 0, offender: routerV6, dst: 'fd00:200:2:0:0:0:0:1', dstPort: 0 },
      'IPV6_UNICAST_HOPS 1: time exceeded from R',
    ],
    ['udpTtl4', { errno: 'EHOSTUNREACH', origin: ICMP, type: 11, code: 0, offender: routerV4, dst: '10.200.2.1', dstPort: 33434 }, 'UDP, per-datagram TTL 1'],
    [
      'udpTtl6',
      { errno: 'EHOSTUNREACH', origin: ICMP6, type: 3, code: 0, offender: routerV6, dst: 'fd00:200:2:0:0:0:0:1', dstPort: 33434 },
      'UDP, per-datagram hop limit 1',
    ],
    ['pingTtl4Cmsg', { origin: ICMP, type: 11, offender: routerV4 }, 'ping socket, per-datagram TTL 1'],
    ['pingTtl6Cmsg', { origin: ICMP6, type: 3, offender: routerV6 }, 'ping socket, per-datagram hop limit 1'],
    // The host's own neighbor resolution failing comes back as an ICMP error from ourselves.
    [
      'silent4',
      { errno: 'EHOSTUNREACH', origin: ICMP, type: 3, code: 1, offender: '10.200.1.1', dst: '10.200.1.77' },
      'unanswered ARP: host unreachable from our own address',
    ],
    [
      'silent6',
      { errno: 'EHOSTUNREACH', origin: ICMP6, type: 1, code: 3, offender: 'fd00:200:1:0:0:0:0:1', dst: 'fd00:200:1:0:0:0:0:77' },
      'unanswered NDP: address unreachable from our own address',
    ],
  ];
  for (const [name, expected, what] of errCases) {
    scenario(routed, name, (t, o) => {
      t.equal(o.sent, 13, 'sent');
      const err = o.err as Record<string, unknown>;
      t.match(err, { n: 13, ...expected }, what);
      const head = err.payloadHead as number[];
      if (o.id !== null) {
        // Ping sockets: the payload is our echo request as sent, identifier rewritten.
        t.equal(head[0], expected.origin === ICMP6 ? 128 : 8, 'payload: our echo request');
        t.equal((head[4]! << 8) | head[5]!, o.id, 'with the socket identifier');
        t.equal((head[6]! << 8) | head[7]!, 9, 'and our sequence');
      } else {
        t.equal((head[4]! << 8) | head[5]!, 0x4242, 'payload: our UDP payload');
      }
    });
  }
  scenario(routed, 'pmtu4', (t, o) => {
    t.equal(o.sent, 1400, 'DF datagram leaves');
    t.match(
      o.remote,
      { errno: 'EMSGSIZE', origin: ICMP, type: 3, code: 4, info: 1280, offender: routerV4, dst: '10.200.2.1', dstPort: 9 },
      'fragmentation needed from R, MTU 1280 in info',
    );
    t.ok((o.remote as { n: number }).n > 0, 'with the quoted payload');
    t.equal(o.again, 'EMSGSIZE', 'next send: EMSGSIZE at once');
    t.match(
      o.local,
      { n: 0, errno: 'EMSGSIZE', origin: hostnet.SO_EE_ORIGIN_LOCAL, type: 0, code: 0, info: 1280, offender: null, dst: '10.200.2.1' },
      'and an origin-LOCAL entry, MTU in info, no offender',
    );
  });
  scenario(routed, 'pmtu6', (t, o) => {
    t.equal(o.sent, 1400, 'datagram leaves');
    t.match(
      o.remote,
      { errno: 'EMSGSIZE', origin: ICMP6, type: 2, code: 0, info: 1280, offender: routerV6, dst: 'fd00:200:2:0:0:0:0:1', dstPort: 9 },
      'packet too big from R, MTU 1280 in info',
    );
    t.equal(o.again, 'EMSGSIZE', 'next send: EMSGSIZE at once');
    t.match(
      o.local,
      { n: 0, errno: 'EMSGSIZE', origin: hostnet.SO_EE_ORIGIN_LOCAL, info: 1280, offender: null, dst: 'fd00:200:2:0:0:0:0:1', dstPort: 9 },
      'and an origin-LOCAL entry',
    );
  });
});
