// Inbound UDP port forwards (-u): a host socket bound on HOSTPORT; each client (address, port)
// becomes a session whose datagrams reach the guest's GUESTPORT from the client's address (the
// gateway for a loopback client, or across families), and the guest's answers to that address and
// port go back to the client from the bound socket. Sessions expire when idle; the table is
// bounded (the least recently used session goes).
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import type { Stack } from '../iface/stack.js';
import {
  emitIpv4Header,
  emitIpv6Header,
  emitUdpV4,
  emitUdpV6,
  inany,
  inanyBytes,
  inanyFrom,
  inanyOffset,
  inanyOfIpv4,
  inanyV4,
  ipFamily,
  IpProtocol,
  IPV6_HEADER_LEN,
  UDP_HEADER_LEN,
} from '../wire/index.js';
import type { Inany } from '../wire/index.js';
import { clientAsSeen } from './addresses.js';
import type { BoundUdpSocket, HostUdpListen } from './host.js';
import { Flow, FlowKind, FlowSide, FlowSideName, FlowTable, IdleFlows } from './flow-table.js';
import type { FlowInfo } from './flow-info.js';

export interface UdpForward {
  family: 4 | 6;
  addr: Uint8Array | null;
  hostPort: number;
  guestPort: number;
  /** The guest it goes to, when there are several (see guestAddress). */
  guest?: string;
}

export interface UdpForwarderOptions {
  /** The guest's address of a family, when known. */
  guestAddress?: (family: 4 | 6, guest?: string) => Uint8Array | undefined;
  idleMs?: number;
  maxSessions?: number;
  log?: Log;
  /** The NAT's flow table, shared with the other NAT parts (default: one of its own). */
  flows?: FlowTable;
}

/** The unspecified address of each family: the host side's second address (see Session). */
const UNSPECIFIED4 = inanyOfIpv4(0);
const UNSPECIFIED6 = inany();

/**
 * One client of one forward. Guest side: the guest's address and port, and who the guest sees
 * (the client, or the gateway; the client's port). Host side, which the client's datagrams find it
 * by: the client's address and port, and the listener's id as the port of an unspecified address.
 */
class Session extends Flow {
  constructor(
    family: 4 | 6,
    guest: Inany,
    guestPort: number,
    remote: Inany,
    remotePort: number,
    readonly listener: BoundUdpSocket,
    listenerId: number,
    readonly client: Uint8Array,
    readonly clientPort: number,
    now: number,
  ) {
    super(FlowKind.UDP_FORWARD, family, guest, guestPort, remote, remotePort, now);
    const c = inanyFrom(client);
    this.hostSide = new FlowSide(this, FlowSideName.HOST, c, clientPort, client.length === 4 ? UNSPECIFIED4 : UNSPECIFIED6, listenerId);
  }
}

export class UdpForwarder {
  readonly stats = { toGuest: 0, toClient: 0, dropped: 0, sessions: 0 };
  private readonly sockets: BoundUdpSocket[] = [];
  private nextListenerId = 1;
  private readonly table: FlowTable;
  private readonly idle: IdleFlows<Session>;
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
    this.table = opts.flows ?? new FlowTable(this.maxSessions);
    this.idle = new IdleFlows<Session>(this.idleMs);
  }

  /** Binds the forwards' host ports. Throws (EADDRINUSE...) like HostUdpListen.bindUdp.
   *  Returns the sockets made, in order (stopListening() takes one). */
  listen(forwards: readonly UdpForward[]): BoundUdpSocket[] {
    const made: BoundUdpSocket[] = [];
    for (const fw of forwards) {
      const id = this.nextListenerId++;
      const socket: BoundUdpSocket = this.host.bindUdp(fw.family, fw.addr, fw.hostPort, {
        datagram: (data, from, port) => this.fromClient(socket, id, fw, data, from, port),
      });
      this.sockets.push(socket);
      made.push(socket);
    }
    return made;
  }

  get sessionCount(): number {
    return this.idle.size;
  }

  /** A datagram from a host client: on to the guest. */
  private fromClient(listener: BoundUdpSocket, id: number, fw: UdpForward, data: Uint8Array, from: Uint8Array, port: number): void {
    const family = from.length === 4 ? 4 : 6;
    const unspecified = family === 4 ? UNSPECIFIED4 : UNSPECIFIED6;
    const s = (this.table.findHost(FlowKind.UDP_FORWARD, family, from, 0, port, unspecified, inanyOffset(unspecified), id) ??
      this.open(listener, id, fw, from, port)) as Session | undefined;
    if (!s) return;
    this.idle.touch(s, this.stack.now());
    if (UDP_HEADER_LEN + data.length > 0xffff) return void this.stats.dropped++;
    this.stats.toGuest++;
    const b = this.buf;
    const ipLen = ipFamily(s.family).headerLen;
    b.set(data, ipLen + UDP_HEADER_LEN);
    const payloadLength = UDP_HEADER_LEN + data.length;
    if (s.family === 4) {
      const src = inanyV4(s.remote);
      const dst = inanyV4(s.guest);
      emitUdpV4(b, ipLen, { srcPort: s.remotePort, dstPort: s.guestPort, payloadLength: data.length }, src, dst);
      emitIpv4Header(b, 0, { src, dst, proto: IpProtocol.UDP, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength, tos: 0 });
      this.stack.ipv4.sendToGuest(b.subarray(0, ipLen + payloadLength));
    } else if (this.stack.ipv6) {
      emitUdpV6(b, ipLen, { srcPort: s.remotePort, dstPort: s.guestPort, payloadLength: data.length }, s.remote, s.guest);
      emitIpv6Header(b, 0, { src: s.remote, dst: s.guest, nextHeader: IpProtocol.UDP, hopLimit: 64, payloadLength });
      this.stack.ipv6.sendToGuest(b.subarray(0, ipLen + payloadLength));
    }
  }

  private open(listener: BoundUdpSocket, id: number, fw: UdpForward, from: Uint8Array, port: number): Session | undefined {
    let family: 4 | 6 = from.length === 4 ? 4 : 6;
    let guest = this.opts.guestAddress?.(family, fw.guest);
    if (!guest) {
      family = family === 4 ? 6 : 4;
      guest = this.opts.guestAddress?.(family, fw.guest);
    }
    if (!guest) {
      this.stats.dropped++;
      this.log.warn({ port: fw.hostPort }, 'forwarded UDP datagram dropped: the guest address is not known yet');
      return undefined;
    }
    // Room: this part's least recently used flow goes when the part or the whole table is full.
    this.idle.makeRoom(this.maxSessions, this.table, (f) => this.forget(f));
    const remote = clientAsSeen(this.stack.config, family, from);
    // Two clients the guest would see as one (both shown as the gateway, same port): the newer
    // one takes the guest side.
    const clash = this.table.find(FlowKind.UDP_FORWARD, family, guest, 0, fw.guestPort, remote, 0, port);
    if (clash) this.forget(clash as Session);
    const s = new Session(family, inanyFrom(guest), fw.guestPort, inanyFrom(remote), port, listener, id, from.slice(), port, this.stack.now());
    if (!this.table.insert(s)) {
      this.stats.dropped++;
      return undefined;
    }
    this.idle.add(s);
    this.stats.sessions++;
    return s;
  }

  /**
   * A datagram from the guest (the IP packet, UDP header at `udpOff`): when it answers a session,
   * it goes to that session's client and this returns true.
   */
  fromGuest(family: 4 | 6, packet: Uint8Array, udpOff: number): boolean {
    if (this.idle.size === 0) return false;
    const { srcOff, dstOff } = ipFamily(family);
    const srcPort = (packet[udpOff]! << 8) | packet[udpOff + 1]!;
    const dstPort = (packet[udpOff + 2]! << 8) | packet[udpOff + 3]!;
    const s = this.table.find(FlowKind.UDP_FORWARD, family, packet, srcOff, srcPort, packet, dstOff, dstPort) as Session | undefined;
    if (!s) return false;
    this.idle.touch(s, this.stack.now());
    const len = (packet[udpOff + 4]! << 8) | packet[udpOff + 5]!;
    const rc = s.listener.sendTo(packet.subarray(udpOff + UDP_HEADER_LEN, udpOff + len), s.client, s.clientPort);
    if (rc < 0) this.stats.dropped++;
    else this.stats.toClient++;
    return true;
  }

  pollAt(): number {
    return this.idle.pollAt();
  }

  poll(now: number): void {
    this.idle.expire(now, (s) => this.forget(s));
  }

  /** Forgets every session (the guest went away); the listeners stay. */
  forgetSessions(): void {
    for (const s of this.idle.all()) this.forget(s);
  }

  /** Forgets the sessions whose guest address `owns` says is a departed guest's; returns how many. */
  forgetGuest(owns: (guest: Inany) => boolean): number {
    return this.idle.endWhere(
      (s) => owns(s.guest),
      (s) => this.forget(s),
    );
  }

  closeAll(): void {
    for (const s of this.sockets) s.close();
    this.sockets.length = 0;
    this.forgetSessions();
  }

  /** A session ends: its sockets are the listener's, which stays. */
  private forget(s: Session): void {
    this.table.remove(s);
    this.idle.delete(s);
  }

  /** Closes one forward's socket (`vunet ctl remove`) and forgets its sessions (the others'
   *  sessions know their listener by its id, not by a place in `sockets`). */
  stopListening(socket: BoundUdpSocket): void {
    const i = this.sockets.indexOf(socket);
    if (i < 0) return;
    this.sockets.splice(i, 1);
    socket.close();
    for (const s of this.idle.all()) if (s.listener === socket) this.forget(s);
  }

  /** The sessions, for `vunet ctl flows` (on request only). */
  describeFlows(now: number): FlowInfo[] {
    const out: FlowInfo[] = [];
    for (const s of this.idle.all()) {
      out.push({
        proto: 'udp-forward',
        family: s.family,
        direction: 'inbound',
        guest: inanyBytes(s.guest).slice(),
        guestPort: s.guestPort,
        remote: inanyBytes(s.remote).slice(),
        remotePort: s.remotePort,
        host: s.client.slice(),
        hostPort: s.clientPort,
        state: 'active',
        ageMs: Math.max(0, now - s.createdAt),
        idleMs: Math.max(0, now - s.lastUse),
      });
    }
    return out;
  }
}
