// TCP on the simulated hosts: each connection to a served port ends at one of our TcpConnections
// (src/tcp, the endpoint the NAT uses toward the guest), and the service answers: echo sends back
// what it reads, discard takes everything, http answers one request with the configured body and
// closes. Segments leave through `send`, which carries them back across the simulated links.
//
// Connections are entries of a flow table of their own (the NAT's table type: guest side = the
// guest's address and port, the host's address and port), at most MAX_CONNECTIONS; a SYN beyond
// that is answered with a RST by the caller. Timers: the connections' own (retransmission, delayed
// ACK, TIME_WAIT), polled together (the set is small and bounded).
import { Flow, FlowKind, FlowTable } from '../nat/flow-table.js';
import { TcpConnection, TcpState, fillTcpRepr } from '../tcp/endpoint.js';
import type { OutSegment, TcpEvents, TcpTransmitter } from '../tcp/endpoint.js';
import type { Inany, TcpRepr } from '../wire/index.js';
import {
  IpProtocol,
  TcpSegment,
  doubleFields,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpV4,
  emitTcpV6,
  inanyOf,
  inanyV4,
  ipFamily,
  tcpHeaderLength,
} from '../wire/index.js';
import type { SimNode, SimService } from './topology.js';

/** Bound on simulated TCP connections, every host together. */
export const MAX_CONNECTIONS = 1024;
/** An HTTP request is read up to this much (its header); a longer one is answered 431. */
const MAX_REQUEST = 8192;
const UTF8 = new TextEncoder();
const NOTHING = new Uint8Array(0);

/** Carries a segment a host sends (a whole IP packet, valid only during the call). */
export type SendFromHost = (node: SimNode, family: 4 | 6, packet: Uint8Array) => void;

class SimConnection extends Flow {
  /** The request read so far (http). */
  request = '';
  /** Bytes that wait for room in the send buffer (an echo the peer reads slowly; the response). */
  pending: Uint8Array | undefined;
  /** http: close once `pending` is sent. */
  closeAfter = false;
  constructor(
    family: 4 | 6,
    guest: Inany,
    guestPort: number,
    local: Inany,
    localPort: number,
    readonly node: SimNode,
    readonly service: SimService,
    readonly conn: TcpConnection<SimConnection>,
    now: number,
  ) {
    super(FlowKind.TCP, family, guest, guestPort, local, localPort, now);
  }
}

export class SimTcpServices implements TcpTransmitter<SimConnection> {
  readonly stats = { connections: 0, refused: 0, requests: 0 };
  private readonly table = new FlowTable(MAX_CONNECTIONS);
  private readonly open = new Set<SimConnection>();
  private readonly seg = new TcpSegment();
  private readonly buf = new Uint8Array(40 + 60 + 65535);
  private readonly repr: TcpRepr = doubleFields({ srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, payloadLength: 0 }, 'seq', 'ack');
  private ipId = 0;
  private readonly events: TcpEvents<SimConnection> = {
    established: () => undefined,
    data: (c, data) => this.data(c.owner, data),
    peerClosed: (c) => {
      const s = c.owner;
      // echo and discard close when the peer has; http once its answer is out.
      if (s.service.serve !== 'http' || s.pending === undefined) c.close();
      else s.closeAfter = true;
    },
    sendSpace: (c) => this.push(c.owner),
    aborted: (c) => this.forget(c.owner),
    closed: (c) => this.forget(c.owner),
  };

  constructor(
    private readonly send: SendFromHost,
    private readonly now: () => number,
    private readonly random: () => number,
  ) {}

  get connectionCount(): number {
    return this.open.size;
  }

  /**
   * A segment for `service` on `node` (packet: the whole IP packet as it arrived, TCP header at
   * `l4Off`, checked). False when it belongs to no connection and opens none (not a SYN, or the
   * table is full): the caller answers with a RST.
   */
  input(node: SimNode, service: SimService, family: 4 | 6, packet: Uint8Array, l4Off: number, mtu: number): boolean {
    const seg = this.seg.at(packet, l4Off, packet.length - l4Off);
    const { srcOff, dstOff } = ipFamily(family);
    const now = this.now();
    const known = this.table.find(FlowKind.TCP, family, packet, srcOff, seg.srcPort, packet, dstOff, seg.dstPort) as SimConnection | undefined;
    if (known) {
      known.conn.input(seg, now);
      known.conn.output(now);
      return true;
    }
    if (!seg.syn || seg.hasAck || seg.rst || this.open.size >= MAX_CONNECTIONS) {
      if (seg.syn) this.stats.refused++;
      return seg.rst; // a RST for nothing is dropped, not answered
    }
    // The MSS this host announces: its link's MTU less the headers (RFC 9293 §3.7.1).
    const mss = mtu - ipFamily(family).headerLen - 20;
    const iss = (this.random() * 0x1_0000_0000) >>> 0;
    const conn = new TcpConnection<SimConnection>({ mss, timeWaitMs: 2000 }, this.events, this, { iss, tsOffset: iss });
    const s = new SimConnection(family, inanyOf(family, packet, srcOff), seg.srcPort, inanyOf(family, packet, dstOff), seg.dstPort, node, service, conn, now);
    conn.owner = s;
    if (!conn.acceptSyn(seg) || !this.table.insert(s)) return true;
    this.open.add(s);
    this.stats.connections++;
    conn.synAck(now);
    conn.output(now);
    return true;
  }

  pollAt(): number {
    let at = Infinity;
    for (const s of this.open) at = Math.min(at, s.conn.pollAt());
    return at;
  }

  poll(now: number): void {
    for (const s of [...this.open]) {
      if (s.conn.pollAt() > now) continue;
      s.conn.poll(now);
      if (s.live) s.conn.output(now);
    }
  }

  /** Every connection ends (RST toward the guest). */
  closeAll(): void {
    for (const s of [...this.open]) {
      if (s.conn.state !== TcpState.CLOSED) s.conn.abort();
      s.conn.output(this.now());
      this.forget(s);
    }
  }

  /** TcpTransmitter: one segment, from the host's address to the guest. */
  transmit(conn: TcpConnection<SimConnection>, seg: OutSegment): boolean {
    const s = conn.owner;
    const { headerLen } = ipFamily(s.family);
    const r = fillTcpRepr(this.repr, seg, s.remotePort, s.guestPort);
    const b = this.buf;
    const hl = tcpHeaderLength(r);
    if (seg.dataLength > 0 && conn.copySendData(seg.dataOffset, seg.dataLength, b, headerLen + hl) !== seg.dataLength) return false;
    const len = hl + seg.dataLength;
    if (s.family === 4) {
      const src = inanyV4(s.remote);
      const dst = inanyV4(s.guest);
      emitTcpV4(b, headerLen, r, src, dst);
      this.ipId = (this.ipId + 1) & 0xffff;
      emitIpv4Header(b, 0, { src, dst, proto: IpProtocol.TCP, ttl: 64, id: this.ipId, flags: 0b010, fragOffset: 0, payloadLength: len, tos: 0 });
    } else {
      emitTcpV6(b, headerLen, r, s.remote, s.guest);
      emitIpv6Header(b, 0, { src: s.remote, dst: s.guest, nextHeader: IpProtocol.TCP, hopLimit: 64, payloadLength: len });
    }
    this.send(s.node, s.family, b.subarray(0, headerLen + len));
    return true;
  }

  private data(s: SimConnection, data: Uint8Array): number {
    switch (s.service.serve) {
      case 'discard':
        return data.length;
      case 'echo':
        // What the send buffer does not take stays in the receive buffer: the window closes.
        return s.conn.send(data);
      case 'http':
        return this.http(s, data);
    }
  }

  /** Reads the request's header; answers it once, then closes. */
  private http(s: SimConnection, data: Uint8Array): number {
    if (s.pending !== undefined || s.closeAfter) return data.length;
    for (let i = 0; i < data.length && s.request.length <= MAX_REQUEST; i++) s.request += String.fromCharCode(data[i]!);
    const end = s.request.indexOf('\r\n\r\n');
    if (end < 0 && s.request.length <= MAX_REQUEST) return data.length;
    this.stats.requests++;
    const line = s.request.slice(0, s.request.indexOf('\r\n')).split(' ');
    const method = line[0] ?? '';
    const svc = s.service;
    let status = '200 OK';
    let body = svc.body;
    if (end < 0) [status, body] = ['431 Request Header Fields Too Large', NOTHING];
    else if (method !== 'GET' && method !== 'HEAD') [status, body] = ['501 Not Implemented', NOTHING];
    const bodyBytes = method === 'HEAD' ? NOTHING : body;
    const length = body.length;
    const head = UTF8.encode(
      `HTTP/1.0 ${status}\r\nServer: vunet-sim\r\nContent-Type: ${svc.contentType}\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`,
    );
    s.pending = new Uint8Array(head.length + bodyBytes.length);
    s.pending.set(head, 0);
    s.pending.set(bodyBytes, head.length);
    s.request = '';
    s.closeAfter = true;
    this.push(s);
    return data.length;
  }

  /** Sends what waits for room (echo: what the receive buffer kept); closes when an http answer
   *  is all out. */
  private push(s: SimConnection): void {
    if (s.service.serve === 'echo') {
      s.conn.deliver((buf, off, len) => s.conn.send(buf.subarray(off, off + len)));
      s.conn.output(this.now());
      return;
    }
    const p = s.pending;
    if (p === undefined) return;
    const n = s.conn.send(p);
    s.pending = n === p.length ? undefined : p.subarray(n);
    if (s.pending === undefined && s.closeAfter) s.conn.close();
    s.conn.output(this.now());
  }

  private forget(s: SimConnection): void {
    this.table.remove(s);
    this.open.delete(s);
  }
}
