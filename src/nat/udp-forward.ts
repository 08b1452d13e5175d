// Inbound UDP port forwards (-u): a host socket bound on HOSTPORT; each client (address, port)
// becomes a session whose datagrams reach the guest's GUESTPORT from the client's address (the
// gateway for a loopback client, or across families), and the guest's answers to that address and
// port go back to the client from the bound socket. Sessions expire when idle; the table is
// bounded (the least recently used session goes).
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import type { Stack } from '../iface/stack.js';
import { IPV6_HEADER_LEN, IpProtocol, UDP_HEADER_LEN, emitIpv4Header, emitIpv6Header, emitUdpV4, emitUdpV6, ipv4Read, toHex } from '../wire/index.js';
import { clientAsSeen } from './addresses.js';
import type { BoundUdpSocket, HostUdpListen } from './host.js';
import type { FlowInfo } from './flow-info.js';

export interface UdpForward {
  family: 4 | 6;
  addr: Uint8Array | null;
  hostPort: number;
  guestPort: number;
}

export interface UdpForwarderOptions {
  /** The guest's address of a family, when known. */
  guestAddress?: (family: 4 | 6) => Uint8Array | undefined;
  idleMs?: number;
  maxSessions?: number;
  log?: Log;
}

interface Session {
  listener: BoundUdpSocket;
  client: Uint8Array;
  clientPort: number;
  /** Guest side: the guest's address and port, and who the guest sees (address, port). */
  family: 4 | 6;
  guest: Uint8Array;
  guestPort: number;
  remote: Uint8Array;
  remotePort: number;
  lastUse: number;
}

export class UdpForwarder {
  readonly stats = { toGuest: 0, toClient: 0, dropped: 0, sessions: 0 };
  private readonly sockets: BoundUdpSocket[] = [];
  /** Sessions by their guest-side tuple (the guest's answers look them up). */
  private readonly byGuest = new Map<string, Session>();
  /** ...and by client, per listener. */
  private readonly byClient = new Map<string, Session>();
  private readonly buf = new Uint8Array(IPV6_HEADER_LEN + 0x10000);
  private readonly idleMs: number;
  private readonly maxSessions: number;
  private readonly log: Log;

  constructor(
    private readonly stack: Stack,
    private readonly host: HostUdpListen,
    private readonly opts: UdpForwarderOptions = {},
  ) {
    this.idleMs = opts.idleMs ?? 120_000;
    this.maxSessions = opts.maxSessions ?? 1024;
    this.log = opts.log ?? silentLog;
  }

  /** Binds the forwards' host ports. Throws (EADDRINUSE...) like HostUdpListen.bindUdp.
   *  Returns the sockets made, in order (stopListening() takes one). */
  listen(forwards: readonly UdpForward[]): BoundUdpSocket[] {
    const made: BoundUdpSocket[] = [];
    for (const fw of forwards) {
      const index = this.sockets.length;
      const socket = this.host.bindUdp(fw.family, fw.addr, fw.hostPort, {
        datagram: (data, from, port) => this.fromClient(index, fw, data, from, port),
      });
      this.sockets.push(socket);
      made.push(socket);
    }
    return made;
  }

  get sessionCount(): number {
    return this.byGuest.size;
  }

  /** A datagram from a host client: on to the guest. */
  private fromClient(index: number, fw: UdpForward, data: Uint8Array, from: Uint8Array, port: number): void {
    const ckey = `${index}|${toHex(from)}|${port}`;
    let s = this.byClient.get(ckey);
    if (!s) {
      const n = this.open(this.sockets[index]!, fw, from, port, ckey);
      if (!n) return;
      s = n;
    }
    s.lastUse = this.stack.now();
    if (UDP_HEADER_LEN + data.length > 0xffff) return void this.stats.dropped++;
    this.stats.toGuest++;
    const b = this.buf;
    const ipLen = s.family === 4 ? 20 : IPV6_HEADER_LEN;
    b.set(data, ipLen + UDP_HEADER_LEN);
    const payloadLength = UDP_HEADER_LEN + data.length;
    if (s.family === 4) {
      const src = ipv4Read(s.remote, 0);
      const dst = ipv4Read(s.guest, 0);
      emitUdpV4(b, ipLen, { srcPort: s.remotePort, dstPort: s.guestPort, payloadLength: data.length }, src, dst);
      emitIpv4Header(b, 0, { src, dst, proto: IpProtocol.UDP, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength, tos: 0 });
      this.stack.ipv4.sendToGuest(b.subarray(0, ipLen + payloadLength));
    } else if (this.stack.ipv6) {
      emitUdpV6(b, ipLen, { srcPort: s.remotePort, dstPort: s.guestPort, payloadLength: data.length }, s.remote, s.guest);
      emitIpv6Header(b, 0, { src: s.remote, dst: s.guest, nextHeader: IpProtocol.UDP, hopLimit: 64, payloadLength });
      this.stack.ipv6.sendToGuest(b.subarray(0, ipLen + payloadLength));
    }
  }

  private open(listener: BoundUdpSocket, fw: UdpForward, from: Uint8Array, port: number, ckey: string): Session | undefined {
    let family: 4 | 6 = from.length === 4 ? 4 : 6;
    let guest = this.opts.guestAddress?.(family);
    if (!guest) {
      family = family === 4 ? 6 : 4;
      guest = this.opts.guestAddress?.(family);
    }
    if (!guest) {
      this.stats.dropped++;
      this.log.warn({ port: fw.hostPort }, 'forwarded UDP datagram dropped: the guest address is not known yet');
      return undefined;
    }
    if (this.byGuest.size >= this.maxSessions) this.evictOldest();
    const remote = clientAsSeen(this.stack.config, family, from);
    const s: Session = {
      listener,
      client: from.slice(),
      clientPort: port,
      family,
      guest: guest.slice(),
      guestPort: fw.guestPort,
      remote,
      remotePort: port,
      lastUse: 0,
    };
    const gkey = guestKey(family, s.guest, s.guestPort, s.remote, s.remotePort);
    const clash = this.byGuest.get(gkey);
    if (clash) this.forget(clash);
    this.byGuest.set(gkey, s);
    this.byClient.set(ckey, s);
    this.stats.sessions++;
    return s;
  }

  /**
   * A datagram from the guest (the IP packet, UDP header at `udpOff`): when it answers a session,
   * it goes to that session's client and this returns true.
   */
  fromGuest(family: 4 | 6, packet: Uint8Array, udpOff: number): boolean {
    if (this.byGuest.size === 0) return false;
    const alen = family === 4 ? 4 : 16;
    const src = packet.subarray(family === 4 ? 12 : 8, (family === 4 ? 12 : 8) + alen);
    const dst = packet.subarray(family === 4 ? 16 : 24, (family === 4 ? 16 : 24) + alen);
    const srcPort = (packet[udpOff]! << 8) | packet[udpOff + 1]!;
    const dstPort = (packet[udpOff + 2]! << 8) | packet[udpOff + 3]!;
    const s = this.byGuest.get(guestKey(family, src, srcPort, dst, dstPort));
    if (!s) return false;
    s.lastUse = this.stack.now();
    const len = (packet[udpOff + 4]! << 8) | packet[udpOff + 5]!;
    const rc = s.listener.sendTo(packet.subarray(udpOff + UDP_HEADER_LEN, udpOff + len), s.client, s.clientPort);
    if (rc < 0) this.stats.dropped++;
    else this.stats.toClient++;
    return true;
  }

  pollAt(): number {
    let at = Infinity;
    for (const s of this.byGuest.values()) at = Math.min(at, s.lastUse + this.idleMs);
    return at;
  }

  poll(now: number): void {
    for (const s of [...this.byGuest.values()]) if (now - s.lastUse >= this.idleMs) this.forget(s);
  }

  /** Forgets every session (the guest went away); the listeners stay. */
  forgetSessions(): void {
    this.byGuest.clear();
    this.byClient.clear();
  }

  closeAll(): void {
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    this.byGuest.clear();
    this.byClient.clear();
  }

  private evictOldest(): void {
    let oldest: Session | undefined;
    for (const s of this.byGuest.values()) if (!oldest || s.lastUse < oldest.lastUse) oldest = s;
    if (oldest) this.forget(oldest);
  }

  private forget(s: Session): void {
    this.byGuest.delete(guestKey(s.family, s.guest, s.guestPort, s.remote, s.remotePort));
    for (const [k, v] of this.byClient) {
      if (v === s) {
        this.byClient.delete(k);
        break;
      }
    }
  }

  /**
   * Closes one forward's socket (`vunet ctl remove`) and forgets its sessions. Its slot in
   * `sockets` keeps a closed stand-in: the other forwards' sessions are keyed by their index.
   */
  stopListening(socket: BoundUdpSocket): void {
    const i = this.sockets.indexOf(socket);
    if (i < 0) return;
    this.sockets[i] = CLOSED_SOCKET;
    socket.close();
    for (const s of [...this.byGuest.values()]) if (s.listener === socket) this.forget(s);
  }

  /** The sessions, for `vunet ctl flows` (on request only). */
  describeFlows(now: number): FlowInfo[] {
    const out: FlowInfo[] = [];
    for (const s of this.byGuest.values()) {
      out.push({
        proto: 'udp-forward',
        family: s.family,
        direction: 'inbound',
        guest: s.guest.slice(),
        guestPort: s.guestPort,
        remote: s.remote.slice(),
        remotePort: s.remotePort,
        host: s.client.slice(),
        hostPort: s.clientPort,
        state: 'active',
        idleMs: Math.max(0, now - s.lastUse),
      });
    }
    return out;
  }
}

/** What a removed forward's slot holds: sends nothing (EBADF), closes nothing. */
const CLOSED_SOCKET: BoundUdpSocket = { sendTo: () => -9, close: () => {} };

function guestKey(family: 4 | 6, guest: Uint8Array, guestPort: number, remote: Uint8Array, remotePort: number): string {
  return `${family}|${toHex(guest)}|${guestPort}|${toHex(remote)}|${remotePort}`;
}
