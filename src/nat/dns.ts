// DNS forwarding for the DNS addresses (10.0.2.3, fec0::3): queries from the guest go to the
// host's resolvers (from /etc/resolv.conf, or --dns) with an identifier of ours, answers are
// matched back to their query and returned with the guest's identifier; a resolver that stays
// silent for `timeoutMs` is skipped for the next one. Only the guest's queries are forwarded, and
// pending queries are bounded.
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import type { Stack, UdpV4Input, UdpV6Input } from '../iface/stack.js';
import type { HostUdp, UdpSocket } from './host.js';

export interface Resolver {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
}

export interface DnsForwarderOptions {
  timeoutMs?: number;
  maxPending?: number;
  log?: Log;
}

interface Pending {
  id: number;
  guestId: number;
  family: 4 | 6;
  guest: Uint8Array;
  guestPort: number;
  guestMac: Uint8Array;
  query: Uint8Array;
  resolver: number;
  deadline: number;
}

const DNS_PORT = 53;
const HEADER = 12;
/** The largest query forwarded: what a pending query may hold (4 KiB × maxPending in all). */
const MAX_QUERY = 4096;

export class DnsForwarder {
  readonly stats = { queries: 0, answers: 0, retries: 0, timeouts: 0, dropped: 0 };
  private readonly pending = new Map<number, Pending>();
  private readonly sockets: (UdpSocket | undefined)[] = [];
  private nextId: number;
  private readonly timeoutMs: number;
  private readonly maxPending: number;
  private readonly log: Log;

  constructor(
    private readonly stack: Stack,
    private readonly host: HostUdp,
    private readonly resolvers: readonly Resolver[],
    opts: DnsForwarderOptions = {},
    random: () => number = Math.random,
  ) {
    this.timeoutMs = opts.timeoutMs ?? 2000;
    this.maxPending = opts.maxPending ?? 1024;
    this.log = opts.log ?? silentLog;
    this.nextId = Math.floor(random() * 0x10000);
    if (resolvers.length === 0) this.log.warn({}, 'no DNS resolver found (no nameserver in /etc/resolv.conf and no --dns): guest DNS queries go unanswered');
  }

  /** The resolver DNS over TCP goes to: the first of the family, else the first (TCP crosses
   *  families, since it is re-originated). */
  resolverFor(family: 4 | 6): { family: 4 | 6; addr: Uint8Array } | undefined {
    return this.resolvers.find((r) => r.family === family) ?? this.resolvers[0];
  }

  /** Registers on UDP port 53 of our DNS addresses. */
  attach(): void {
    // Port 53 of our other addresses is not a resolver: those datagrams go on as unserved.
    this.stack.onUdpV4(DNS_PORT, (d) => d.dstIp === this.stack.config.ipv4.dns && this.query4(d));
    this.stack.onUdpV6(DNS_PORT, (d) => this.query6(d));
  }

  private query4(d: UdpV4Input): true {
    const guest = Uint8Array.of(d.srcIp >>> 24, (d.srcIp >>> 16) & 0xff, (d.srcIp >>> 8) & 0xff, d.srcIp & 0xff);
    this.forward(4, guest, d.srcPort, d.srcMac.slice(d.srcMacOffset, d.srcMacOffset + 6), d.payload);
    return true;
  }

  private query6(d: UdpV6Input): boolean {
    const dns = this.stack.config.ipv6?.dns;
    if (!dns || !d.bytes.subarray(d.dstOffset, d.dstOffset + 16).every((b, i) => b === dns[i])) return false;
    this.forward(6, d.bytes.slice(d.srcOffset, d.srcOffset + 16), d.srcPort, d.bytes.slice(d.srcMacOffset, d.srcMacOffset + 6), d.payload);
    return true;
  }

  private forward(family: 4 | 6, guest: Uint8Array, guestPort: number, guestMac: Uint8Array, query: Uint8Array): void {
    // A DNS message has a 12-byte header; QR must be 0 (a query). Queries are small (a name, a
    // type, EDNS options); one over MAX_QUERY is no query we would forward, and each pending one
    // holds a copy.
    if (query.length < HEADER || query.length > MAX_QUERY || (query[2]! & 0x80) !== 0 || this.resolvers.length === 0) {
      this.stats.dropped++;
      return;
    }
    if (this.pending.size >= this.maxPending) {
      this.stats.dropped++;
      return;
    }
    this.stats.queries++;
    let id = this.nextId;
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    this.nextId = (id + 1) & 0xffff;
    const p: Pending = { id, guestId: (query[0]! << 8) | query[1]!, family, guest, guestPort, guestMac, query: query.slice(), resolver: 0, deadline: 0 };
    this.pending.set(id, p);
    this.send(p);
  }

  private send(p: Pending): void {
    const s = this.socket(p.resolver);
    p.deadline = this.stack.now() + this.timeoutMs;
    if (!s) return;
    p.query[0] = p.id >> 8;
    p.query[1] = p.id & 0xff;
    s.send(p.query, 64);
  }

  private socket(i: number): UdpSocket | undefined {
    const known = this.sockets[i];
    if (known) return known;
    const r = this.resolvers[i]!;
    try {
      const s = this.host.openUdp(r.family, r.addr, DNS_PORT, {
        datagram: (data) => this.answer(data),
        error: () => undefined, // a dead resolver shows as a timeout, then the next one is tried
      });
      this.sockets[i] = s;
      return s;
    } catch (err) {
      this.log.warn({ code: (err as { code?: string }).code }, 'cannot open a socket to a DNS resolver');
      return undefined;
    }
  }

  private answer(data: Uint8Array): void {
    if (data.length < HEADER) return;
    const p = this.pending.get((data[0]! << 8) | data[1]!);
    if (!p) return; // late or unknown: nothing to match
    this.pending.delete(p.id);
    this.stats.answers++;
    const reply = data.slice();
    reply[0] = p.guestId >> 8;
    reply[1] = p.guestId & 0xff;
    const c = this.stack.config;
    if (p.family === 4) {
      const to = ((p.guest[0]! << 24) | (p.guest[1]! << 16) | (p.guest[2]! << 8) | p.guest[3]!) >>> 0;
      this.stack.ipv4.sendUdpV4(c.ipv4.dns, DNS_PORT, to, p.guestPort, p.guestMac, reply);
    } else if (c.ipv6 && this.stack.ipv6) {
      this.stack.ipv6.sendUdpV6(c.ipv6.dns, DNS_PORT, p.guest, p.guestPort, p.guestMac, reply);
    }
  }

  pollAt(): number {
    let at = Infinity;
    if (this.pending.size === 0) return at; // (the usual case: no iterator made)
    for (const p of this.pending.values()) at = Math.min(at, p.deadline);
    return at;
  }

  /** Retries timed-out queries on the next resolver; gives up after the last. */
  poll(now: number): void {
    for (const p of [...this.pending.values()]) {
      if (p.deadline > now) continue;
      if (p.resolver + 1 < this.resolvers.length) {
        p.resolver++;
        this.stats.retries++;
        this.send(p);
      } else {
        this.pending.delete(p.id);
        this.stats.timeouts++;
      }
    }
  }

  closeAll(): void {
    for (const s of this.sockets) s?.close();
    this.sockets.length = 0;
    this.pending.clear();
  }
}
