// The NAT's host side on real sockets (the hostnet addon): ICMP echo through an unprivileged ping
// socket, or a raw socket when ping sockets are not permitted and the process has CAP_NET_RAW.
// Which one is in use is probed once and logged. Socket events run the `afterEvents` callback so
// the runtime re-arms the stack's timer (a reply may start neighbour resolution).
import { networkInterfaces } from 'node:os';
import { native } from 'vhost-user-ts';
import type { NativePoller } from 'vhost-user-ts';
import { hostnet, newErrInfo, newRecvInfo } from '../host/native.js';
import type { Family } from '../host/native.js';
import type { Log } from '../iface/log.js';
import type { EchoSocket, EchoSocketEvents, HostNet, HostUdp, UdpSocket, UdpSocketEvents } from '../nat/host.js';
import { formatIpv6, internetChecksum } from '../wire/index.js';

const ICMP_ECHO = { 4: { request: 8, reply: 0 }, 6: { request: 128, reply: 129 } } as const;
const MAX_ICMP = 65536;

export class NodeHostNet implements HostNet, HostUdp {
  readonly echoMode: 'ping' | 'raw' | 'none';
  /** Receive and send scratch, shared by all sockets (handlers run one at a time). */
  private readonly rx = new Uint8Array(MAX_ICMP);
  private readonly tx = new Uint8Array(MAX_ICMP);
  private readonly recvInfo = newRecvInfo();
  private readonly errInfo = newErrInfo();
  private nextRawIdent = (Math.random() * 0xffff) | 0;

  constructor(
    log: Log,
    private readonly afterEvents: () => void = () => undefined,
  ) {
    this.echoMode = probe();
    if (this.echoMode === 'ping') log.info({ echo: 'ping socket' }, 'guest pings go out through unprivileged ICMP ping sockets');
    else if (this.echoMode === 'raw') log.info({ echo: 'raw socket' }, 'ping sockets are not permitted here; guest pings go out through raw ICMP sockets (CAP_NET_RAW)');
    else {
      log.warn(
        { echo: 'none' },
        'no ICMP socket available: guest pings beyond the gateway will go unanswered. Fix: sysctl -w net.ipv4.ping_group_range="0 2147483647" (or give vunet CAP_NET_RAW)',
      );
    }
  }

  openEcho(family: Family, events: EchoSocketEvents): EchoSocket {
    const raw = this.echoMode === 'raw';
    if (this.echoMode === 'none') throw Object.assign(new Error('no ICMP socket permitted'), { code: 'EACCES' });
    const fd = hostnet.openIcmp(family, raw);
    let ident = 0;
    try {
      hostnet.setRecvErr(fd, family, true);
      hostnet.setRecvTtl(fd, family, true);
      if (raw) {
        hostnet.setIcmpFilter(fd, family, [ICMP_ECHO[family].reply]);
        this.nextRawIdent = (this.nextRawIdent + 1) & 0xffff;
        ident = this.nextRawIdent;
      }
    } catch (err) {
      hostnet.close(fd);
      throw err;
    }
    let poller: NativePoller | undefined;
    const onEvent = (): void => {
      this.drain(fd, family, raw, ident, events);
      poller?.start(native.POLL_READABLE); // a pending error stops the poller (see native.ts)
      this.afterEvents();
    };
    poller = new native.Poller(fd, onEvent, false);
    poller.start(native.POLL_READABLE);
    return {
      send: (dst, seq, data, ttl) => this.send(fd, family, raw, ident, dst, seq, data, ttl),
      close: () => {
        poller?.close();
        poller = undefined;
        hostnet.close(fd);
      },
    };
  }

  openUdp(family: Family, dst: Uint8Array, port: number, events: UdpSocketEvents): UdpSocket {
    const fd = hostnet.openUdp(family);
    try {
      hostnet.setRecvErr(fd, family, true);
      const rc = hostnet.connect(fd, family, dst, port);
      if (rc < 0) throw Object.assign(new Error(`connect failed: errno ${-rc}`), { code: `errno ${-rc}` });
    } catch (err) {
      hostnet.close(fd);
      throw err;
    }
    let poller: NativePoller | undefined;
    poller = new native.Poller(
      fd,
      () => {
        this.drainUdp(fd, family, events);
        poller?.start(native.POLL_READABLE);
        this.afterEvents();
      },
      false,
    );
    poller.start(native.POLL_READABLE);
    return {
      send: (data, ttl) => {
        let rc = hostnet.sendTo(fd, family, data, 0, data.length, null, 0, ttl);
        // A queued error fails the next send once (see native.ts): send again.
        if (rc < 0 && rc !== -hostnet.EAGAIN) rc = hostnet.sendTo(fd, family, data, 0, data.length, null, 0, ttl);
        return rc;
      },
      close: () => {
        poller?.close();
        poller = undefined;
        hostnet.close(fd);
      },
    };
  }

  private drainUdp(fd: number, family: Family, events: UdpSocketEvents): void {
    const b = this.rx;
    for (;;) {
      const n = hostnet.recvFrom(fd, family, b, 0, b.length, this.recvInfo);
      if (n === -hostnet.EAGAIN) break;
      if (n < 0) continue; // a pending error's errno, reported once: the error queue has it
      events.datagram(b.subarray(0, n));
    }
    const e = this.errInfo;
    for (;;) {
      const n = hostnet.recvErr(fd, family, b, 0, b.length, e);
      if (n < 0) break;
      const fromHost = e.offenderValid && isLocalAddress(e.offender, family);
      events.error({ origin: e.origin, type: e.type, code: e.code, errno: e.errno, info: e.info, offender: e.offender, offenderValid: e.offenderValid && !fromHost }, b.subarray(0, n));
    }
  }

  private send(fd: number, family: Family, raw: boolean, ident: number, dst: Uint8Array, seq: number, data: Uint8Array, ttl: number): number {
    const b = this.tx;
    const len = 8 + data.length;
    if (len > b.length) return -hostnet.EMSGSIZE;
    b[0] = ICMP_ECHO[family].request;
    b[1] = 0;
    b[2] = b[3] = 0;
    // Ping sockets put their own identifier there; a raw socket sends ours.
    b[4] = ident >> 8;
    b[5] = ident & 0xff;
    b[6] = seq >> 8;
    b[7] = seq & 0xff;
    b.set(data, 8);
    if (raw && family === 4) {
      // Raw ICMPv4: the kernel leaves the checksum to us (ICMPv6's it computes itself).
      const c = internetChecksum(b, 0, len);
      b[2] = c >> 8;
      b[3] = c & 0xff;
    }
    let rc = hostnet.sendTo(fd, family, b, 0, len, dst, 0, ttl);
    // A queued error makes the next send fail once with its errno (see native.ts) though nothing
    // is wrong with this datagram: traceroute's parallel probes hit that. Send again.
    if (rc < 0 && rc !== -hostnet.EAGAIN) rc = hostnet.sendTo(fd, family, b, 0, len, dst, 0, ttl);
    return rc;
  }

  /** Reads every queued reply and error-queue entry. */
  private drain(fd: number, family: Family, raw: boolean, ident: number, events: EchoSocketEvents): void {
    const b = this.rx;
    const info = this.recvInfo;
    for (;;) {
      const n = hostnet.recvFrom(fd, family, b, 0, b.length, info);
      if (n === -hostnet.EAGAIN) break;
      if (n < 0) continue; // a pending error's errno, reported once: the error queue has it
      // Raw IPv4 delivers the IP header too; skip it (and take the TTL from it).
      let off = 0;
      let ttl = info.ttl;
      if (raw && family === 4) {
        off = (b[0]! & 0x0f) * 4;
        ttl = b[8]!;
      }
      if (n - off < 8 || b[off] !== ICMP_ECHO[family].reply) continue;
      if (raw && ((b[off + 4]! << 8) | b[off + 5]!) !== ident) continue; // someone else's reply
      const seq = (b[off + 6]! << 8) | b[off + 7]!;
      events.reply(info.addr.subarray(0, family === 4 ? 4 : 16), seq, b.subarray(off + 8, n), ttl);
    }
    const e = this.errInfo;
    for (;;) {
      const n = hostnet.recvErr(fd, family, b, 0, b.length, e);
      if (n < 0) break;
      if (n < 8) continue;
      const seq = (b[6]! << 8) | b[7]!;
      // The host reports its own failures to resolve a next hop as ICMP from one of its own
      // addresses: those come from our gateway address, like any local failure.
      const fromHost = e.offenderValid && isLocalAddress(e.offender, family);
      events.error(
        { origin: e.origin, type: e.type, code: e.code, errno: e.errno, info: e.info, offender: e.offender, offenderValid: e.offenderValid && !fromHost },
        seq,
        b.subarray(8, n),
      );
    }
  }
}

/** Whether `addr` (16 bytes, IPv4 in the first 4) is an address of this host (errors only). */
function isLocalAddress(addr: Uint8Array, family: Family): boolean {
  const text = family === 4 ? Array.from(addr.subarray(0, 4)).join('.') : formatIpv6(addr, 0);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address === text) return true;
  }
  return false;
}

/** Which echo socket this process may open: a ping socket, else a raw one, else none. */
function probe(): 'ping' | 'raw' | 'none' {
  for (const raw of [false, true]) {
    try {
      hostnet.close(hostnet.openIcmp(4, raw));
      return raw ? 'raw' : 'ping';
    } catch {
      // not permitted: try the next kind
    }
  }
  return 'none';
}
