// TCP NAT: every guest TCP connection ends at one of our TcpConnections (src/tcp) and continues on
// a host socket, as slirp and passt do. The two halves meet here.
//
// Theory of operation
// - Outbound. A guest SYN to X:p (beyond us, or to the gateway, which reaches the host's loopback)
//   makes a flow in phase *connecting*: the connection remembers the SYN (acceptSyn) and a
//   non-blocking host connect to X:p starts with the guest's TTL minus one, so the SYN dies at the
//   hop the guest's would have (TCP traceroute). The guest hears nothing until the host knows:
//   connected → our SYN-ACK (phase *open*); refused → RST at once; an ICMP error → the same ICMP
//   error from the reporting hop, quoting the guest's SYN; the host's own resolution failure →
//   host unreachable from the gateway; silence → silence. Retransmitted SYNs meanwhile are ignored.
// - Inbound (port forwards). A listener accepts a host connection; the flow's connection opens
//   actively toward the guest's address (ARP/NDP resolves it; failure closes the host side).
// - Data, guest → host: at the end of each batch, one write per flow. In-order payload that the
//   device left in guest memory (NEEDS_CSUM segments) is kept by reference (TcpEvents.takeData)
//   and written with one writev from there; the rest comes from the connection's receive buffer.
//   What the socket does not take stays in (or is copied back into) that buffer, and the window
//   we offer shrinks by that much — backpressure. `writable` drains it (deliver).
// - Data, host → guest: where the host offers it (HostTcp.streamQueues: SO_PEEK_OFF on TCP), the
//   host socket's receive queue is the connection's send buffer (StreamSendBuffer): a readable
//   event only notes how much is queued; each segment's data is peeked from its offset into the
//   frame, a retransmission peeks it again, and what the guest acknowledged is discarded once the
//   flow's batch is done. The kernel holds the unacknowledged bytes and closes the host peer's
//   window when the guest is slow. While its last output left data unsent, the flow does not read
//   (no event wakes us for data it could not send yet) and each output notes the queue instead.
//   Elsewhere host reads go into the connection's own send buffer
//   (sendReserve); reading pauses while that is full and resumes on `sendSpace`. Segments are
//   built in place in the stack's output frame.
// - Close: each direction on its own. Host EOF → our FIN to the guest after the data; the guest's
//   FIN (with everything before it written) → shutdown(SHUT_WR) on the host socket. The host
//   socket closes once both directions ended (and, when it holds the send buffer, the guest
//   acknowledged all of it); the connection lives on through TIME_WAIT.
//   A RST either way is passed on as a RST (SO_LINGER 0 toward the host).
// - Output is batched: input and host events mark flows dirty; flush() (after each TX batch and
//   host-event batch) runs output() on them. While the guest has no receive buffers, output stops
//   and resumes on the link's room callback.
// - Timers: each flow sits in a deadline heap at its connection's pollAt(); poll() takes the due
//   ones only, so no work is ever proportional to the number of flows.
// - Bounds and floods. Every flow draws its minimum buffers and bookkeeping from the memory budget
//   (refused: RST) and its buffers grow from it. Connections being set up are cheap and bounded:
//   at most maxConnecting outbound (the oldest evicted for a new one; the guest's retransmitted
//   SYN starts it again), at most maxConnectingPerDestination to one address (further SYNs to it
//   are dropped), and forwarded connections waiting for the guest likewise (oldest evicted).
//   New connections are rate-limited per guest address and per destination, forwarded ones per
//   client (token buckets; a SYN over the rate is dropped, the guest sends it again; a forwarded
//   client over the rate is reset), and forwarded connections hold at most inboundShare of the
//   table, so a flood from outside never takes the guest's own connections' room.
// - Fences: a SYN to a destination the fence refuses (host loopback, unspecified addresses,
//   --deny-host, --deny) gets a RST and a counter.
// - A guest that stops answering ARP/NDP (paused, suspended, debugged) keeps its connections: a
//   segment that cannot be delivered is lost like any other and retransmitted; only forwarded
//   connections still waiting for the guest's first answer are given up (nothing listens there).
import { DeadlineHeap } from '../iface/deadline-heap.js';
import type { HeapItem } from '../iface/deadline-heap.js';
import type { Log } from '../iface/log.js';
import { LogLimiter, silentLog } from '../iface/log.js';
import type { MemoryAccount } from '../iface/memory-budget.js';
import { TokenBucket } from '../iface/rate-limit.js';
import type { Stack } from '../iface/stack.js';
import { GSO_MAX_PACKET, LINK_HEADROOM } from '../iface/link.js';
import { ipv6Key } from '../iface/neighbor.js';
import { WorkList } from '../iface/work-list.js';
import { RECV_BUFFER_INITIAL, SEND_BUFFER_INITIAL, TcpConnection, TcpState, fillTcpRepr, tcpStateName } from '../tcp/endpoint.js';
import type { OutSegment, TcpConfig, TcpEvents, TcpTransmitter } from '../tcp/endpoint.js';
import {
  emitEthernetHeader,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpV4,
  emitTcpV6,
  EtherType,
  formatInany,
  inanyBytes,
  inanyOf,
  inanyV4,
  ipFamily,
  IpProtocol,
  ipv4Read,
  IPV6_HEADER_LEN,
  TCP_CHECKSUM_OFFSET,
  setTcpSeq,
  TcpFlags,
  tcpHeaderLength,
  TcpSegment,
} from '../wire/index.js';
import type { EthernetRepr, Inany, Ipv4Repr, Ipv6Repr, TcpOptions, TcpRepr } from '../wire/index.js';
import { ViewCache, doubleFields } from '../wire/bytes.js';
import { clientAsSeen, loopback, serviceAddress } from './addresses.js';
import type { Fence } from './fence.js';
import type { AcceptedTcp, HostTcp, TcpListener, TcpSocket, TcpSocketEvents } from './host.js';
import { sendGuestError } from './flows.js';
import { Flow, FlowKind, FlowTable } from './flow-table.js';
import { StreamSendBuffer } from './stream-buffer.js';
import type { FlowInfo } from './flow-info.js';
import { Errno, refusedSend, translateError } from './icmp-errors.js';
import type { HostError } from './icmp-errors.js';

export interface TcpNatOptions {
  /** Connections to the gateway addresses reach the host's loopback (slirp's behaviour). */
  mapGateway?: boolean;
  /** Connections to the DNS address's port 53 go to this resolver (DNS over TCP). */
  dnsUpstream?: (family: 4 | 6) => { family: 4 | 6; addr: Uint8Array } | undefined;
  /** The guest's address for inbound connections of a family, when known. */
  guestAddress?: (family: 4 | 6, guest?: string) => Uint8Array | undefined;
  /** Bound on flows (connections in any state); SYNs beyond it are refused. */
  maxFlows?: number;
  /** The NAT's flow table, shared with the other NAT parts (default: one of its own). */
  flows?: FlowTable;
  /** Flood bounds and rates (see TcpLimits). */
  limits?: Partial<TcpLimits>;
  /** Destinations the guest may not reach. */
  fence?: Fence;
  /** Where flows draw their buffers from (the memory budget). Default: unlimited. */
  memory?: MemoryAccount;
  /** flush() left work for a later turn (a bounded batch): call flush() again soon. */
  moreWork?: () => void;
  /** Overrides for the endpoint's parameters (buffers, TIME_WAIT...). */
  tcp?: Partial<TcpConfig>;
  random?: () => number;
  log?: Log;
  /** Called when connections wait for the guest's receive buffers (ask the link for onRoom). */
  wantRoom?: () => void;
}

/** One inbound forward: a host port whose connections go to a guest port. */
export interface TcpForward {
  family: 4 | 6;
  /** Host address to listen on (4 or 16 bytes), or null for any. */
  addr: Uint8Array | null;
  hostPort: number;
  guestPort: number;
  /** The guest it goes to, when there are several (see TcpNatOptions.guestAddress). */
  guest?: string;
}

/** Bounds that keep a flood from taking the table, the CPU or the guest's own connections. */
export interface TcpLimits {
  /** Outbound connections waiting for the host connect, all destinations (oldest evicted). */
  maxConnecting: number;
  /** ...to one destination address (further SYNs to it dropped). */
  maxConnectingPerDestination: number;
  /** New outbound connections per second from one guest address, and the burst. */
  connectRate: number;
  connectBurst: number;
  /** New outbound connections per second to one destination address, and the burst. */
  destinationRate: number;
  destinationBurst: number;
  /** Forwarded connections accepted per second from one client address, and the burst. */
  acceptRate: number;
  acceptBurst: number;
  /** Forwarded connections waiting for the guest's SYN-ACK (oldest evicted). */
  maxAccepting: number;
  /** Share of the table forwarded connections may hold. */
  inboundShare: number;
}

export const DEFAULT_TCP_LIMITS: TcpLimits = {
  maxConnecting: 1024,
  maxConnectingPerDestination: 256,
  connectRate: 1000,
  connectBurst: 1000,
  destinationRate: 500,
  destinationBurst: 1000,
  acceptRate: 1000,
  acceptBurst: 1000,
  maxAccepting: 256,
  inboundShare: 0.75,
};

/** What one flow draws from the memory budget before its buffers grow: its objects (the flow, its
 *  connection, the host socket's wrapper and poller: about 6 KiB of heap, measured with 8000
 *  flows) and the buffers' initial sizes: 28 KiB. */
export const TCP_FLOW_COST = 8192 + SEND_BUFFER_INITIAL + RECV_BUFFER_INITIAL;
/** Due timers handled per poll(); the rest go on the next turn. */
/** The longest TCP header (60 bytes: 20 and 40 of options). */
const MAX_TCP_HEADER = 60;
const POLL_BATCH = 2048;
/** Dirty flows output per flush(); the rest go on the next turn. */
const FLUSH_BATCH = 2048;
/** Bound on the per-address rate-limit tables. */
const MAX_BUCKETS = 4096;

type Phase = 'connecting' | 'open';

/** Flows in creation order (an intrusive list): the connecting and accepting sets, whose oldest
 *  member goes first. */
class FlowList {
  head: TcpFlow | undefined;
  tail: TcpFlow | undefined;
  count = 0;

  add(f: TcpFlow): void {
    f.list = this;
    f.listPrev = this.tail;
    f.listNext = undefined;
    if (this.tail) this.tail.listNext = f;
    else this.head = f;
    this.tail = f;
    this.count++;
  }

  remove(f: TcpFlow): void {
    if (f.list !== this) return;
    if (f.listPrev) f.listPrev.listNext = f.listNext;
    else this.head = f.listNext;
    if (f.listNext) f.listNext.listPrev = f.listPrev;
    else this.tail = f.listPrev;
    f.list = f.listPrev = f.listNext = undefined;
    this.count--;
  }
}

/** Per destination: connections waiting for it, and its rate. */
interface Destination {
  connecting: number;
  bucket: TokenBucket;
}

/**
 * The headers last built for an in-place segment, while its flow's output runs: the next segment
 * of a run repeats them but for its sequence number (same addresses and ports, ack, window, flags,
 * options and length; IPv4's identification is 0 under DF), so only that field is rewritten.
 */
class HeadersBuilt {
  /** The flow they were built for (undefined: none may repeat them). */
  flow: TcpFlow | undefined;
  /** Where the TCP header starts in the buffer, and where it ends. */
  tcpOff = 0;
  end = 0;
  private flags = 0;
  private ack = 0;
  private window = 0;
  private length = 0;
  private tsVal = 0;
  private tsEcr = 0;

  constructor() {
    doubleFields(this, 'ack', 'tsVal', 'tsEcr'); // unsigned 32-bit
  }

  /** Headers were built for `seg` of `flow` (undefined: outside its output, not to repeat).
   *  Options beyond timestamps (SYN's, SACK blocks) are built each time. */
  note(flow: TcpFlow | undefined, seg: OutSegment, tcpOff: number, end: number): void {
    this.flow = flow !== undefined && plainOptions(seg.options) ? flow : undefined;
    this.tcpOff = tcpOff;
    this.end = end;
    this.flags = seg.flags;
    this.ack = seg.ack;
    this.window = seg.window;
    this.length = seg.dataLength;
    this.tsVal = seg.options.timestamp ? seg.options.tsVal : -1;
    this.tsEcr = seg.options.tsEcr;
  }

  /** Whether `seg` (of the same flow) has these headers but for its sequence number. */
  repeatedBy(seg: OutSegment): boolean {
    const opts = seg.options;
    return (
      seg.dataLength === this.length &&
      seg.flags === this.flags &&
      seg.ack === this.ack &&
      seg.window === this.window &&
      (opts.timestamp ? opts.tsVal : -1) === this.tsVal &&
      opts.tsEcr === this.tsEcr &&
      plainOptions(opts)
    );
  }
}

/** Options that are timestamps at most. */
function plainOptions(opts: TcpOptions): boolean {
  return opts.mss < 0 && opts.windowScale < 0 && !opts.sackPermitted && opts.sackCount === 0;
}

/** One connection: the guest side's 4-tuple, our endpoint, the host socket. */
class TcpFlow extends Flow implements HeapItem {
  heapIndex = -1;
  heapDeadline = Infinity;
  list: FlowList | undefined;
  listPrev: TcpFlow | undefined;
  listNext: TcpFlow | undefined;
  /** Hash of the remote address, for the per-destination bound (outbound, while connecting). */
  destKey = 0;
  phase: Phase = 'connecting';
  socket: TcpSocket | undefined;
  /** The guest's SYN as it sent it (outbound, until the host connect ends): ICMP errors quote it. */
  syn: Uint8Array | undefined;
  /** Host side: end of stream read / our FIN written (shutdown). */
  hostEof = false;
  hostShut = false;
  reading = false;
  writing = false;
  /** Its last output left data unsent (the guest's window or RX buffers held it back): while so,
   *  a flow whose send buffer is its socket's queue does not read (passt's STALLED). */
  stalled = false;
  dirty = false;
  /** In waitingRoom: its output waits for the guest's receive buffers. */
  waitingRoom = false;
  /** The connection's send buffer when it is the host socket's receive queue. */
  stream: StreamSendBuffer | undefined;
  /** The guest address as the IPv6 neighbour cache keys it (made on first use). */
  neighborKey: string | undefined;
  /** Guest data taken by reference this batch (still in guest memory), for one writev. */
  taken: TakenSpans | undefined;
  /** What deliver() hands this flow's guest data to (made once: flushes make no closure). */
  toHost: (buf: Uint8Array, off: number, len: number) => number = () => 0;
  /** The host socket's peer address (its port is remotePort): status. */
  hostEnd: Uint8Array | undefined;
  constructor(
    family: 4 | 6,
    guest: Inany,
    guestPort: number,
    remote: Inany,
    remotePort: number,
    readonly inbound: boolean,
    readonly conn: TcpConnection<TcpFlow>,
    now: number,
  ) {
    super(FlowKind.TCP, family, guest, guestPort, remote, remotePort, now);
  }
}

/** A flow's guest data taken by reference during a TX batch: guest-memory spans, in order. */
class TakenSpans {
  static readonly MAX = 256;
  count = 0;
  readonly views: Uint8Array[] = new Array<Uint8Array>(TakenSpans.MAX).fill(new Uint8Array(0));
  readonly offsets = new Float64Array(TakenSpans.MAX);
  readonly lengths = new Uint32Array(TakenSpans.MAX);
}

const isWaitingRoom = (f: TcpFlow): boolean => f.waitingRoom;

const EAGAIN = 11;
const ENOTSUP = 95;
const ECONNRESET = 104;
const ETIMEDOUT = 110;

export class TcpNat implements TcpTransmitter {
  readonly stats = doubleFields(
    {
      connectsOut: 0,
      connectsIn: 0,
      established: 0,
      refused: 0,
      unreachable: 0,
      timedOut: 0,
      resetsToGuest: 0,
      resetsFromGuest: 0,
      tableFull: 0,
      bytesToHost: 0,
      bytesFromHost: 0,
      linkFull: 0,
      /** SYNs to fenced destinations, answered with RST. */
      fenced: 0,
      /** SYNs dropped by the per-guest or per-destination rate, or the per-destination bound. */
      synsDropped: 0,
      /** Connections still connecting evicted for newer ones. */
      connectingEvicted: 0,
      /** Forwarded connections refused (rate, share of the table, no guest address) or evicted. */
      acceptsRefused: 0,
      acceptsEvicted: 0,
      /** Flows refused because the memory budget was spent. */
      noMemory: 0,
      /** Peeks into guest memory that fell short (the host socket failed). */
      payloadsShort: 0,
      /** Guest data written to host sockets straight from guest memory, and what those sockets
       *  refused and was copied into the connection's buffer instead. */
      bytesByReference: 0,
      bytesPutBack: 0,
    },
    'bytesToHost',
    'bytesFromHost',
    'bytesByReference',
    'bytesPutBack',
  );
  /** The endpoints' counters, summed over closed connections and the open ones (status). */
  private readonly closedTotals: Record<string, number> = {};
  private readonly table: FlowTable;
  private inboundCount = 0;
  private readonly timers = new DeadlineHeap<TcpFlow>();
  private readonly connecting = new FlowList();
  private readonly accepting = new FlowList();
  private readonly destinations = new Map<number, Destination>();
  private readonly sources = new Map<number, TokenBucket>();
  private readonly clients = new Map<number, TokenBucket>();
  private readonly limits: TcpLimits;
  private readonly limited: LogLimiter;
  private readonly memory: MemoryAccount | undefined;
  private readonly dirtyFlows = new WorkList<TcpFlow>();
  /** Flows holding guest data by reference (see takeData), until releaseTaken(). */
  private readonly takenFlows = new WorkList<TcpFlow>();
  /** Flows whose output waits for the guest's receive buffers (flag TcpFlow.waitingRoom; a flow
   *  that went meanwhile stays listed, unflagged, until linkRoom()). */
  private readonly waitingRoom = new WorkList<TcpFlow>();
  private waitingRoomCount = 0;
  /** flush() is walking dirtyFlows. */
  private flushing = false;
  private readonly listeners: TcpListener[] = [];
  private readonly seg = new TcpSegment();
  /** Headers of segments whose payload is filled in place (transmitInPlace), and their views. */
  private readonly headerOut = new Uint8Array(LINK_HEADROOM + IPV6_HEADER_LEN + MAX_TCP_HEADER);
  private readonly headerViews = new ViewCache();
  private readonly ethOut: EthernetRepr = { dst: new Uint8Array(6), src: new Uint8Array(6), etherType: 0 };
  /** The guest MAC and EtherType headerOut's Ethernet header holds (a neighbor entry's MAC is
   *  replaced, never changed in place, on change), so a run of segments writes it once. */
  private headerOutMac: Uint8Array | undefined;
  private headerOutType = 0;
  /** While outputFlow() runs (only from flush()): its flow, and the guest MAC its segments go to
   *  once looked up (no guest frame is handled meanwhile, so the neighbor entry stays as it was). */
  private outputting: TcpFlow | undefined;
  private outputtingMac: Uint8Array | undefined;
  /** The segment whose headers headerOut holds, during its flow's output (see HeadersBuilt). */
  private readonly built = new HeadersBuilt();
  /** The flow whose frames wait for their payload, and the queue range it covers. */
  private inPlace: TcpFlow | undefined;
  private inPlaceStart = 0;
  private inPlaceEnd = 0;
  /** Where a segment larger than the MTU is built (made at the first one). */
  private gsoOut: Uint8Array | undefined;
  /** The views of segments built in the output frames, by length (none made per segment). */
  private readonly packetViews = new ViewCache();
  private readonly repr: TcpRepr = doubleFields({ srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, payloadLength: 0 }, 'seq', 'ack');
  private readonly ip4: Ipv4Repr = doubleFields(
    { src: 0, dst: 0, proto: IpProtocol.TCP, ttl: 64, id: 0, flags: 0b010, fragOffset: 0, payloadLength: 0, tos: 0 },
    'src',
    'dst',
  );
  private readonly ip6: Ipv6Repr = { src: new Uint8Array(16), dst: new Uint8Array(16), nextHeader: IpProtocol.TCP, hopLimit: 64, payloadLength: 0 };
  private readonly errBuf = new Uint8Array(IPV6_HEADER_LEN + 1280);
  private readonly rstBuf = new Uint8Array(IPV6_HEADER_LEN + 20);
  private readonly config4: TcpConfig;
  private readonly config6: TcpConfig;
  private readonly mapGateway: boolean;
  private readonly maxFlows: number;
  /** What a flow draws from the budget: TCP_FLOW_COST, less the send buffer where the host
   *  socket's queue is that. */
  private readonly flowCost: number;
  private readonly log: Log;
  private readonly random: () => number;
  private readonly events: TcpEvents<TcpFlow>;

  constructor(
    private readonly stack: Stack,
    private readonly host: HostTcp,
    private readonly opts: TcpNatOptions = {},
  ) {
    this.mapGateway = opts.mapGateway ?? true;
    this.ethOut.src = stack.config.mac;
    this.maxFlows = opts.maxFlows ?? 8192;
    this.flowCost = TCP_FLOW_COST - (host.streamQueues === true ? SEND_BUFFER_INITIAL : 0);
    this.limits = { ...DEFAULT_TCP_LIMITS, ...opts.limits };
    this.memory = opts.memory;
    this.log = opts.log ?? silentLog;
    this.limited = new LogLimiter(this.log, () => stack.now());
    this.random = opts.random ?? Math.random;
    this.table = opts.flows ?? new FlowTable(this.maxFlows, (this.random() * 0x1_0000_0000) >>> 0);
    const mtu = stack.config.mtu;
    // The MSS we announce: the link MTU less the IP and TCP headers (RFC 9293 §3.7.1).
    const memory = opts.memory ? { memory: opts.memory } : {};
    this.config4 = { ...opts.tcp, ...memory, mss: mtu - 20 - 20 };
    this.config6 = { ...opts.tcp, ...memory, mss: mtu - IPV6_HEADER_LEN - 20 };
    this.events = {
      established: (c) => this.established(flowOf(c)),
      // Guest → host data waits in the connection's receive buffer until the end of the batch
      // (flush), when each flow writes what its segments brought with one call.
      buffered: true,
      data: (c) => this.dataFromGuest(flowOf(c)),
      takeData: (c, bytes, off, len) => this.takeData(flowOf(c), bytes, off, len),
      readingPayload: () => this.stack.loadRxPayload(),
      peerClosed: (c) => this.guestFin(flowOf(c)),
      // (With the socket's queue as the send buffer there is no space to wait for.)
      sendSpace: (c) => {
        const f = flowOf(c);
        if (!f.stream) this.fillFromHost(f);
      },
      aborted: (c, reason) => this.aborted(flowOf(c), reason),
      closed: (c) => this.remove(flowOf(c)),
    };
  }

  get flowCount(): number {
    return this.table.count(FlowKind.TCP);
  }

  /** Every live connection (status and listings; not on a hot path). */
  private all(): TcpFlow[] {
    const out: TcpFlow[] = [];
    for (const f of this.table.flows()) if (f instanceof TcpFlow) out.push(f);
    return out;
  }

  /** The endpoints' counters (retransmits, timeouts, ...), all connections so far. */
  endpointTotals(): Record<string, number> {
    const out = { ...this.closedTotals };
    for (const f of this.all()) for (const [k, v] of Object.entries(f.conn.stats)) out[k] = (out[k] ?? 0) + v;
    return out;
  }

  /** Connections by state name, for status output. */
  states(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const f of this.all()) {
      const name = f.phase === 'connecting' ? 'CONNECTING' : tcpStateName(f.conn.state);
      out[name] = (out[name] ?? 0) + 1;
    }
    return out;
  }

  // ---- guest → us ----

  /** Whether a guest segment (TCP header at `l4Off`) belongs to one of our connections. */
  has(family: 4 | 6, packet: Uint8Array, l4Off: number): boolean {
    const { srcOff, dstOff } = ipFamily(family);
    const srcPort = (packet[l4Off]! << 8) | packet[l4Off + 1]!;
    const dstPort = (packet[l4Off + 2]! << 8) | packet[l4Off + 3]!;
    return this.table.find(FlowKind.TCP, family, packet, srcOff, srcPort, packet, dstOff, dstPort) !== undefined;
  }

  /** A TCP segment from the guest (the stack's tcpInput hook): checked, checksum verified. */
  input(family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number): void {
    const seg = this.seg.at(packet, l4Off, packet.length - l4Off);
    const { srcOff, dstOff } = ipFamily(family);
    const f = this.table.find(FlowKind.TCP, family, packet, srcOff, seg.srcPort, packet, dstOff, seg.dstPort) as TcpFlow | undefined;
    const now = this.stack.now();
    if (f) {
      if (seg.syn && !seg.hasAck && f.conn.state === TcpState.TIME_WAIT) {
        // A new incarnation of a connection in TIME_WAIT (RFC 6191 lets a SYN reopen it): start
        // afresh.
        this.remove(f);
        return this.open(family, packet, l4Off, ttl, now);
      }
      if (f.phase === 'connecting') {
        // The host has not answered yet: a retransmitted SYN waits with the first; a RST means
        // the guest gave up.
        if (seg.rst) this.drop(f, true);
        return;
      }
      if (seg.rst) this.stats.resetsFromGuest++;
      f.conn.input(seg, now);
      this.completePayloads();
      this.markDirty(f);
      return;
    }
    if (seg.rst) return;
    if (!seg.syn || seg.hasAck || seg.fin) return this.resetFor(family, packet, l4Off);
    this.open(family, packet, l4Off, ttl, now);
  }

  /** A guest SYN for a new connection. */
  private open(family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number, now: number): void {
    const seg = this.seg;
    const { alen, srcOff, dstOff } = ipFamily(family);
    const port = seg.dstPort;
    // Where the host connects: the destination itself, or for our own addresses what stands
    // behind them (the host's loopback for the gateway, the resolver for the DNS address).
    let target: Uint8Array | undefined;
    let hostFamily = family;
    let hostTtl = ttl - 1; // we are a router on its way: the host's SYN carries TTL - 1
    const ours = this.ourAddress(family, packet.subarray(dstOff, dstOff + alen));
    if (ours !== undefined) {
      hostTtl = -1;
      if (ours === 'gateway' && this.mapGateway) target = loopback(family);
      else if (ours === 'dns' && port === 53) {
        const r = this.opts.dnsUpstream?.(family);
        if (r) {
          target = r.addr;
          hostFamily = r.family;
        }
      }
      if (!target) return this.resetFor(family, packet, l4Off); // nothing listens there
    } else {
      const why = this.opts.fence?.check(family, packet, dstOff);
      if (why !== undefined) {
        this.stats.fenced++;
        this.limited.warn(() => ({ to: addressText(family, packet, dstOff), port, why }), 'guest TCP connection to a fenced address refused');
        return this.resetFor(family, packet, l4Off);
      }
    }
    // Rates: a SYN over them is dropped (the guest sends it again); so is one to a destination
    // that already has its share of connections waiting.
    const dest = ours !== undefined ? undefined : this.destination(family, packet, dstOff, now);
    if (
      !this.bucket(this.sources, addressHash(family, packet, srcOff), this.limits.connectRate, this.limits.connectBurst, now).take(now) ||
      (dest && (!dest.bucket.take(now) || dest.connecting >= this.limits.maxConnectingPerDestination))
    ) {
      this.stats.synsDropped++;
      this.limited.warn(
        () => ({ to: addressText(family, packet, dstOff), port }),
        'guest TCP connections over the rate or the per-destination bound: SYN dropped',
      );
      return;
    }
    if (this.flowCount >= this.maxFlows || !this.table.hasRoom()) {
      this.stats.tableFull++;
      this.limited.warn({ flows: this.flowCount, all: this.table.size }, 'TCP flow table full: connection refused');
      return this.resetFor(family, packet, l4Off);
    }
    if (this.connecting.count >= this.limits.maxConnecting) {
      // The oldest attempt goes (a flood's, most likely); if it was the guest's, its next SYN
      // starts it again.
      this.stats.connectingEvicted++;
      this.limited.warn({ connecting: this.connecting.count }, 'too many TCP connections being set up: the oldest given up');
      this.drop(this.connecting.head!, true);
    }
    if (!this.takeMemory()) return this.resetFor(family, packet, l4Off);
    const stream = this.host.streamQueues ? new StreamSendBuffer() : undefined;
    const conn = this.newConnection(family, now, stream);
    if (!conn.acceptSyn(seg)) {
      this.memory?.give(this.flowCost);
      return;
    }
    target ??= packet.slice(dstOff, dstOff + alen);
    const f = new TcpFlow(family, inanyOf(family, packet, srcOff), seg.srcPort, inanyOf(family, packet, dstOff), port, false, conn, now);
    f.hostEnd = target;
    f.stream = stream;
    conn.owner = f;
    f.toHost = (buf, off, len) => this.toHost(f, buf, off, len);
    f.syn = packet.slice(0, Math.min(packet.length, ipFamily(family).errorMax));
    this.insert(f);
    this.connecting.add(f);
    if (dest) {
      f.destKey = addressHash(family, packet, dstOff);
      dest.connecting++;
    }
    try {
      f.socket = this.host.connectTcp(hostFamily, target, port, hostTtl, this.socketEvents(f));
    } catch (err) {
      this.limited.warn({ err: (err as Error).message }, 'cannot open a host TCP socket: connection refused');
      this.drop(f, false);
      return this.resetFor(family, packet, l4Off);
    }
    this.stats.connectsOut++;
    this.log.debug({ family, port }, 'TCP connect from the guest');
  }

  /** Draws a flow's minimum from the memory budget; false (counted, logged) when spent. */
  private takeMemory(): boolean {
    if (!this.memory || this.memory.take(this.flowCost)) return true;
    this.stats.noMemory++;
    this.limited.warn({ budget: this.memory.budget.limit }, 'memory budget spent: TCP connection refused');
    return false;
  }

  /** The state of a destination address (made on first use; the table is bounded). */
  private destination(family: 4 | 6, a: Uint8Array, off: number, now: number): Destination {
    const key = addressHash(family, a, off);
    let d = this.destinations.get(key);
    if (!d) {
      if (this.destinations.size >= MAX_BUCKETS) {
        for (const [k, v] of this.destinations) {
          if (v.connecting === 0) {
            this.destinations.delete(k);
            break;
          }
        }
      }
      d = { connecting: 0, bucket: new TokenBucket(this.limits.destinationRate, this.limits.destinationBurst, now) };
      this.destinations.set(key, d);
    }
    return d;
  }

  /** The token bucket of an address in `table` (made on first use; the oldest goes when full). */
  private bucket(table: Map<number, TokenBucket>, key: number, rate: number, burst: number, now: number): TokenBucket {
    let b = table.get(key);
    if (!b) {
      if (table.size >= MAX_BUCKETS) table.delete(table.keys().next().value!);
      b = new TokenBucket(rate, burst, now);
      table.set(key, b);
    }
    return b;
  }

  /** The flow is set up (or gone): it leaves the connecting or accepting set. */
  private settled(f: TcpFlow): void {
    if (f.list === this.connecting && f.destKey !== 0) {
      const d = this.destinations.get(f.destKey);
      if (d) d.connecting--;
    }
    f.list?.remove(f);
  }

  // ---- host events ----

  private socketEvents(f: TcpFlow): TcpSocketEvents {
    return {
      connected: () => this.hostConnected(f),
      connectFailed: (errno, error) => this.hostConnectFailed(f, errno, error),
      readable: () => this.readHost(f),
      writable: () => this.hostWritable(f),
    };
  }

  private hostConnected(f: TcpFlow): void {
    if (!f.live || f.phase !== 'connecting') return;
    this.settled(f);
    f.phase = 'open';
    f.syn = undefined;
    f.conn.synAck(this.stack.now());
    this.markDirty(f);
    this.flush();
  }

  /** The host connect failed: tell the guest what a real network would have. */
  private hostConnectFailed(f: TcpFlow, errno: number, error: HostError | undefined): void {
    if (!f.live || f.phase !== 'connecting') return;
    const syn = f.syn!;
    this.drop(f, false);
    if (errno === Errno.ECONNREFUSED && !error) {
      this.stats.refused++;
      return this.resetFor(f.family, syn, f.family === 4 ? (syn[0]! & 0x0f) * 4 : IPV6_HEADER_LEN);
    }
    if (errno === ETIMEDOUT && !error) {
      this.stats.timedOut++;
      return; // silence gives silence
    }
    const e = error ?? refusedSend(errno);
    const g = translateError(f.family, e);
    if (!g) {
      this.log.debug({ errno }, 'TCP connect failed without an ICMP equivalent');
      return;
    }
    this.stats.unreachable++;
    sendGuestError(this.stack, f.family, g, e, f.guest, syn, this.errBuf);
  }

  /** Host → guest: the host socket is readable. */
  private readHost(f: TcpFlow): void {
    if (this.fillFromHost(f)) this.flush();
  }

  /**
   * Reads from the host socket into the connection's send buffer while it has room. Returns true
   * when there may be output to flush; false when there was nothing to read from (no socket, its
   * end already read, the flow gone) or the flow just ended (its end flushed itself). The guest's ACKs call this (sendSpace) in the middle
   * of a batch: what it reads goes out with the batch's output.
   */
  private fillFromHost(f: TcpFlow): boolean {
    const s = f.socket;
    if (!s || f.hostEof || !f.live) return false;
    // A flow whose send buffer is its socket's receive queue notes what is queued beyond what
    // the connection knows (the peer's FIN after it); another reads into its own buffer.
    if (!(f.stream ? this.takeQueued(f, s, f.stream) : this.readIntoBuffer(f, s))) {
      this.flush();
      return false;
    }
    this.watch(f);
    this.markDirty(f);
    return true;
  }

  /** fillFromHost for a flow with its own send buffer: reads while it has room. False when the
   *  socket failed (the flow is gone). */
  private readIntoBuffer(f: TcpFlow, s: TcpSocket): boolean {
    for (;;) {
      const space = f.conn.sendReserve();
      if (space.length === 0) return true; // the guest is behind: wait for sendSpace
      const n = s.read(space, 0, space.length);
      if (n > 0) {
        f.conn.sendCommit(n);
        this.stats.bytesFromHost += n;
        if (n < space.length) return true;
        continue;
      }
      if (n === -EAGAIN) return true;
      if (n === 0) {
        f.hostEof = true;
        f.conn.close(); // our FIN to the guest, after the data
        this.closeHostIfDone(f);
        return true;
      }
      this.hostFailed(f, -n, 'read', n !== -ECONNRESET);
      return false;
    }
  }

  /** What the host socket's queue holds beyond what the connection knows becomes sendable, its
   *  FIN ours after it; false when the socket failed (the flow is gone). */
  private takeQueued(f: TcpFlow, s: TcpSocket, b: StreamSendBuffer): boolean {
    b.queue ??= s.queue;
    const err = b.queue ? b.queue.takeError() : -ENOTSUP;
    const queued = err < 0 ? err : b.queue!.queued();
    if (queued < 0) {
      this.hostFailed(f, -queued, 'read', queued !== -ECONNRESET);
      return false;
    }
    this.stats.bytesFromHost += b.grow(queued);
    if (b.queue!.ended) {
      f.hostEof = true;
      f.conn.close(); // our FIN to the guest, after the data
    }
    return true;
  }

  /** A host-side reset or error: the guest's connection gets a RST and the flow goes (the host
   *  side with a RST too when `reset`). The caller flushes when it is not inside one. */
  private hostFailed(f: TcpFlow, errno: number, during: 'read' | 'write' | 'discard', reset: boolean): void {
    this.log.debug({ errno, during }, 'host TCP socket failed: resetting the guest connection');
    this.stats.resetsToGuest++;
    f.conn.abort();
    this.drop(f, reset);
  }

  /** The host socket has room: write out what the connection holds. */
  private hostWritable(f: TcpFlow): void {
    if (!f.live || !f.socket) return;
    f.conn.deliver(f.toHost);
    this.watch(f);
    this.markDirty(f); // the window reopened
    this.flush();
  }

  /** In-order guest data arrived: it is written out at the end of the batch (outputFlow). */
  private dataFromGuest(f: TcpFlow): number {
    this.markDirty(f);
    return 0;
  }

  /**
   * Guest → host without a copy: in-order data of a segment whose payload is still in guest
   * memory (the device copied only its headers) is kept as spans, and the batch's writeTaken()
   * hands all of the flow's to the host socket with one writev; the guest's buffers go back
   * after that (the device holds them until releaseTaken()).
   */
  private takeData(f: TcpFlow, bytes: Uint8Array, off: number, len: number): boolean {
    const p = this.stack.rxPayload;
    const s = f.socket;
    if (!p || !s?.writev || f.phase !== 'open' || bytes.buffer !== p.frame.buffer) return false;
    // Where bytes[off, off + len) lie in the payload (the connection may have trimmed the front).
    let skip = bytes.byteOffset + off - (p.frame.byteOffset + p.at);
    if (skip < 0 || skip + len > p.length) return false;
    const t = (f.taken ??= new TakenSpans());
    const first = t.count;
    let left = len;
    for (let i = 0; i < p.count && left > 0; i++) {
      const n = p.lengths[i]!;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      if (t.count === TakenSpans.MAX) {
        t.count = first; // no room for all of it: copied instead
        return false;
      }
      const k = Math.min(n - skip, left);
      t.views[t.count] = p.views[i]!;
      t.offsets[t.count] = p.offsets[i]! + skip;
      t.lengths[t.count] = k;
      t.count++;
      left -= k;
      skip = 0;
    }
    p.kept = true;
    if (first === 0) this.takenFlows.push(f);
    this.markDirty(f);
    return true;
  }

  /** Writes the flow's data taken by reference with one writev; what the socket refuses is
   *  copied into the connection's receive buffer (it waits there as any other). */
  private writeTaken(f: TcpFlow): void {
    const t = f.taken;
    if (!t || t.count === 0) return;
    const s = f.socket;
    let passed = 0;
    let failed = 0;
    if (s?.writev) {
      const n = s.writev(t.views, t.offsets, t.lengths, t.count);
      if (n >= 0) passed = n;
      else if (n !== -EAGAIN) failed = n;
    }
    this.stats.bytesToHost += passed;
    this.stats.bytesByReference += passed;
    if (failed < 0 || !f.conn.settleTaken(passed)) {
      t.count = 0;
      this.hostFailed(f, -failed, 'write', true);
      return;
    }
    // The rest goes back in front of the receive buffer, in order.
    let at = 0;
    let skip = passed;
    for (let i = 0; i < t.count; i++) {
      const n = t.lengths[i]!;
      if (skip >= n) {
        skip -= n;
        continue;
      }
      f.conn.putBack(at, t.views[i]!, t.offsets[i]! + skip, n - skip);
      at += n - skip;
      skip = 0;
    }
    t.count = 0;
    this.stats.bytesPutBack += at;
    if (at > 0) this.wantWrite(f);
  }

  /** Whether some flow still holds data taken by reference (the batch's flush writes what it
   *  reaches); when none does, the list of flows that took some is emptied here. */
  takenPending(): boolean {
    const list = this.takenFlows;
    for (let i = 0; i < list.length; i++) if ((list.at(i).taken?.count ?? 0) > 0) return true;
    list.clear();
    return false;
  }

  /** The device is about to give the guest the buffers of this batch's frames: every flow's data
   *  taken by reference is written or copied now. */
  releaseTaken(): void {
    const list = this.takenFlows;
    for (let i = 0; i < list.length; i++) {
      const f = list.at(i);
      if (f.live) this.writeTaken(f);
      else if (f.taken) f.taken.count = 0;
    }
    list.clear();
  }

  /** Guest → host: writes what the connection holds; returns what the host socket took. */
  private toHost(f: TcpFlow, buf: Uint8Array, off: number, len: number): number {
    const s = f.socket;
    if (!s) return 0;
    const n = s.write(buf, off, len);
    if (n >= 0) {
      this.stats.bytesToHost += n;
      if (n < len) this.wantWrite(f);
      return n;
    }
    if (n === -EAGAIN) {
      this.wantWrite(f);
      return 0;
    }
    this.writeFailed(f, -n);
    return 0;
  }

  /** The host peer is gone (EPIPE, ECONNRESET): the guest gets a RST once the input is done.
   *  Apart from toHost(): a function whose variables a closure captures allocates their context
   *  on every call. */
  private writeFailed(f: TcpFlow, errno: number): void {
    queueMicrotask(() => {
      if (!f.live) return;
      this.hostFailed(f, errno, 'write', true);
      this.flush();
    });
  }

  private wantWrite(f: TcpFlow): void {
    if (f.writing) return;
    f.writing = true;
    f.socket?.watch(f.reading, true);
  }

  /** Sets the host socket's interest: read while the send buffer has room, write while data waits. */
  private watch(f: TcpFlow): void {
    const s = f.socket;
    if (!s) return;
    // A flow whose send buffer is its socket's queue hears of new data only while it could send
    // it: stalled (data already waiting for the guest's window or RX buffers), arrivals would
    // wake us for nothing; its next output looks at the queue instead.
    const read = this.readsHost(f) && (f.stream !== undefined ? !f.stalled : f.conn.sendSpace > 0);
    const write = f.conn.recvBuffered > 0;
    if (read === f.reading && write === f.writing) return;
    f.reading = read;
    f.writing = write;
    s.watch(read, write);
  }

  /** Whether the host's data is taken now. Reads start once the connection is synchronized:
   *  what the host sends first waits in the socket, not in a connection that may never open. */
  private readsHost(f: TcpFlow): boolean {
    return !f.hostEof && f.phase === 'open' && f.conn.state >= TcpState.ESTABLISHED;
  }

  // ---- connection events ----

  private established(f: TcpFlow): void {
    this.settled(f);
    this.stats.established++;
    this.watch(f);
  }

  /** The guest's FIN, everything before it written: half-close toward the host. */
  private guestFin(f: TcpFlow): void {
    if (!f.socket || f.hostShut) return;
    f.hostShut = true;
    f.socket.shutdownWrite();
    this.closeHostIfDone(f);
  }

  private closeHostIfDone(f: TcpFlow): void {
    if (!f.hostEof || !f.hostShut || !f.socket) return;
    if (f.stream && !f.stream.drained) return; // the guest has yet to acknowledge some
    f.socket.close(false);
    f.socket = undefined;
  }

  private aborted(f: TcpFlow, reason: 'reset' | 'timeout' | 'refused'): void {
    this.log.debug({ reason, inbound: f.inbound }, 'TCP connection aborted');
    this.drop(f, true);
  }

  // ---- inbound ----

  /** Starts the listeners of port forwards. Throws (EADDRINUSE...) like HostTcp.listenTcp.
   *  Returns the listeners made, in order (stopListening() takes one). */
  listen(forwards: readonly TcpForward[]): TcpListener[] {
    const made: TcpListener[] = [];
    for (const fw of forwards) {
      const l = this.host.listenTcp(fw.family, fw.addr, fw.hostPort, (acc) => this.accept(acc, fw));
      this.listeners.push(l);
      made.push(l);
    }
    return made;
  }

  /** A host connection to a forwarded port: open toward the guest. */
  private accept(acc: AcceptedTcp, fw: TcpForward): void {
    const guestPort = fw.guestPort;
    const now = this.stack.now();
    // The guest side keeps the client's family when the guest has an address in it.
    let family = acc.family;
    let guest = this.opts.guestAddress?.(family, fw.guest);
    if (!guest) {
      family = family === 4 ? 6 : 4;
      guest = this.opts.guestAddress?.(family, fw.guest);
    }
    let refusal: string | undefined;
    if (!guest) refusal = 'guest address unknown';
    else if (!this.bucket(this.clients, addressHash(acc.family, acc.peer, 0), this.limits.acceptRate, this.limits.acceptBurst, now).take(now))
      refusal = 'client over the connection rate';
    else if (this.flowCount >= this.maxFlows || !this.table.hasRoom() || this.inboundCount >= this.maxFlows * this.limits.inboundShare)
      refusal = 'flow table full for forwarded connections';
    if (refusal !== undefined || !guest) {
      this.stats.acceptsRefused++;
      this.limited.warn({ port: acc.localPort, reason: refusal }, 'forwarded TCP connection refused');
      return acc.reject();
    }
    // The client as the guest sees it: itself when it can be routed back through us, else the
    // gateway (the host's loopback, another family).
    const remote = clientAsSeen(this.stack.config, family, acc.peer);
    if (this.table.find(FlowKind.TCP, family, guest, 0, guestPort, remote, 0, acc.peerPort)) return acc.reject();
    if (this.accepting.count >= this.limits.maxAccepting) {
      this.stats.acceptsEvicted++;
      this.limited.warn({ waiting: this.accepting.count }, 'too many forwarded TCP connections waiting for the guest: the oldest reset');
      this.drop(this.accepting.head!, true);
    }
    if (!this.takeMemory()) {
      this.stats.acceptsRefused++;
      return acc.reject();
    }
    const stream = this.host.streamQueues ? new StreamSendBuffer() : undefined;
    const conn = this.newConnection(family, now, stream);
    const f = new TcpFlow(family, inanyOf(family, guest), guestPort, inanyOf(family, remote), acc.peerPort, true, conn, now);
    f.hostEnd = acc.peer.slice();
    f.stream = stream;
    conn.owner = f;
    f.toHost = (buf, off, len) => this.toHost(f, buf, off, len);
    f.phase = 'open';
    f.socket = acc.attach(this.socketEvents(f));
    this.insert(f);
    this.accepting.add(f);
    this.stats.connectsIn++;
    this.log.debug({ port: acc.localPort, guestPort, family }, 'forwarded TCP connection: SYN to the guest');
    conn.connect(now);
    this.markDirty(f);
    this.flush();
  }

  /**
   * A segment of this flow could not reach the guest: its address did not resolve (ARP/NDP). A
   * forwarded connection still waiting for the guest's first answer is given up (nothing answers
   * at that address); any other keeps going — a paused or suspended guest answers again later, and
   * the connection retransmits what was lost, as over any network.
   */
  unreachable(tag: unknown): boolean {
    if (!(tag instanceof TcpFlow) || !tag.live) return false;
    if (tag.list !== this.accepting) {
      this.log.debug({ guestPort: tag.guestPort }, 'a TCP segment for the guest was lost: ARP/NDP unanswered');
      return true;
    }
    this.limited.warn({ guestPort: tag.guestPort }, 'the guest did not answer ARP/NDP: forwarded TCP connection closed');
    this.drop(tag, true);
    return true;
  }

  // ---- output ----

  /** Sends what the dirty connections have due (after a batch of guest frames or host events),
   *  at most FLUSH_BATCH of them; the rest wait for the next call (moreWork asks for one). */
  flush(): void {
    const list = this.dirtyFlows;
    if (list.length === 0) {
      if (this.waitingRoomCount > 0) this.opts.wantRoom?.();
      return;
    }
    // The list is walked in place: a flush from within a flow's output would move it under this
    // one (none does today; the outer call goes on).
    if (this.flushing) return;
    this.flushing = true;
    // Output may dirty flows again (a host write frees window): those are added behind, for the
    // next call.
    const now = this.stack.now();
    const n = Math.min(list.length, FLUSH_BATCH);
    let done = 0;
    try {
      while (done < n) {
        const f = list.at(done++);
        f.dirty = false;
        if (f.live) this.outputFlow(f, now);
      }
    } finally {
      list.dropFront(done); // (after a throw, the flows not reached stay listed)
      this.flushing = false;
      this.outputting = this.built.flow = undefined; // (after a throw from outputFlow, its MAC and headers are not reused)
    }
    if (list.length > 0 && n === FLUSH_BATCH) this.opts.moreWork?.();
    if (this.waitingRoomCount > 0) this.opts.wantRoom?.();
  }

  private outputFlow(f: TcpFlow, now: number): void {
    // What the guest sent during the batch goes to the host first (one write per flow, two when
    // the buffer wraps), so the ACKs that follow offer the window the write freed.
    this.writeTaken(f);
    if (!f.live) return;
    if (f.socket && !f.writing && f.conn.recvBuffered > 0) f.conn.deliver(f.toHost);
    // No try/finally here (flush() clears it after a throw): with one, this path cost 15 % more
    // CPU in the guest-less host→guest bench.
    const b = f.stream;
    // Not reading (stalled): what arrived meanwhile raised no event. Looked at (a system call)
    // only when what the connection knows of does not fill the window it may send into now.
    if (b && f.socket && !f.reading && this.readsHost(f) && f.conn.unsent < f.conn.usableWindow && !this.takeQueued(f, f.socket, b)) return;
    this.outputting = f;
    this.outputtingMac = undefined;
    f.conn.output(now);
    this.outputting = this.built.flow = undefined;
    this.completePayloads();
    f.stalled = f.conn.unsent > 0;
    if (b && f.socket) {
      // What the guest acknowledged leaves the socket's queue (the host peer's window reopens).
      if (!b.settle()) {
        this.hostFailed(f, 0, 'discard', true);
        return;
      }
      if (f.hostEof && f.hostShut) this.closeHostIfDone(f);
    }
    this.watch(f);
    this.reschedule(f);
  }

  /** Puts the flow at its connection's next deadline in the timer heap. */
  private reschedule(f: TcpFlow): void {
    if (!f.live) return;
    if (f.phase === 'open' && f.conn.state === TcpState.CLOSED) {
      this.remove(f); // closed without an event (cannot happen today; never leak the slot)
      return;
    }
    this.timers.set(f, f.conn.pollAt());
  }

  /**
   * TcpTransmitter: the largest payload one segment to the guest may carry. With segmentation
   * offload (GUEST_TSO4/6, with partial checksums) up to a 64 KiB packet, so a guest at MTU 1500
   * gets what one at 65520 gets. Without it, a segment whose payload goes in place may still be
   * that large when the link cuts it into frames of one MSS itself (FrameLink.cutBudget: as
   * many as the guest has buffers for now): the endpoint and the headers then work once per
   * 64 KiB rather than per frame. Only while the guest's link address is known (such a segment
   * is never queued for ARP/NDP nor fragmented).
   */
  maxSegment(conn: TcpConnection<TcpFlow>): number {
    const f = flowOf(conn);
    let pieces = Infinity;
    if (!this.takesGso(f)) {
      pieces = f.stream && this.stack.payloadsInPlace ? this.stack.cutBudget(f.family) : 0;
      if (pieces < 2) return 0;
    }
    let max: number;
    if (f.family === 4) {
      if (!this.stack.ipv4.neighbors.lookup(inanyV4(f.guest))) return 0;
      max = GSO_MAX_PACKET - 20 - MAX_TCP_HEADER;
    } else {
      if (!this.stack.ipv6?.neighbors.lookup(ipv6Key(f.guest, 0))) return 0;
      max = GSO_MAX_PACKET - IPV6_HEADER_LEN - MAX_TCP_HEADER;
    }
    return Math.min(max, pieces * conn.sendMss);
  }

  /** Whether the guest takes segments larger than the MTU whole (GUEST_TSO4/6, with partial
   *  checksums) for this flow's IP version. */
  private takesGso(f: TcpFlow): boolean {
    return this.stack.partialChecksums && this.stack.segmentationOffload(f.family);
  }

  /** TcpTransmitter: one segment into the stack's output frame, then to the guest. */
  transmit(conn: TcpConnection<TcpFlow>, seg: OutSegment): boolean {
    const f = flowOf(conn);
    if (seg.dataLength > 0 && !this.stack.linkHasRoom()) return this.waitForRoom(f);
    if (seg.dataLength > 0 && f.stream && this.stack.payloadsInPlace && this.transmitInPlace(f, seg)) return true;
    // A segment the link was to cut (see maxSegment) that could not go in place: the guest's
    // buffers ran short. It goes again, sized anew, once the guest posts more.
    if (seg.segmentSize > 0 && !this.takesGso(f)) return this.waitForRoom(f);
    // Frames of this flow held for their payload go first (they come before this one).
    if (this.inPlace === f) this.completePayloads();
    // A segment larger than the MTU (segmentation offload, see maxSegment) is built in its own
    // buffer; the others in the stack's output frame.
    const o = seg.segmentSize > 0 ? (this.gsoOut ??= new Uint8Array(LINK_HEADROOM + GSO_MAX_PACKET)) : this.stack.out;
    const tcpOff = this.segmentRepr(f, seg);
    const hl = tcpHeaderLength(this.repr);
    const end = tcpOff + hl + seg.dataLength;
    if (end > o.length) return false;
    // The data: from the connection's buffer, or peeked from the host socket's queue (which can
    // fail only with the socket; its error event then resets the connection).
    if (seg.dataLength > 0 && conn.copySendData(seg.dataOffset, seg.dataLength, o, tcpOff + hl) !== seg.dataLength) return false;
    // A guest that negotiated GUEST_CSUM completes the checksum itself when it needs one: no pass
    // over the payload here.
    const partial = this.stack.partialChecksums;
    if (this.emitTcpIp(f, o, tcpOff, partial) < 0) return false;
    const csum = partial ? TCP_CHECKSUM_OFFSET : 0;
    const packet = this.packetViews.of(o, LINK_HEADROOM, end);
    if (f.family === 4) this.stack.ipv4.sendToGuest(packet, f, csum, seg.segmentSize);
    else this.stack.ipv6?.sendToGuest(packet, f, false, csum, seg.segmentSize);
    return true;
  }

  /** The guest has no receive buffers for this flow's data: it stops here and resumes when the
   *  guest posts some (linkRoom). Returns false, for transmit(). */
  private waitForRoom(f: TcpFlow): boolean {
    this.stats.linkFull++;
    if (!f.waitingRoom) {
      f.waitingRoom = true;
      this.waitingRoomCount++;
      // Flows that went while waiting are dropped from the list before it outgrows the waiting.
      if (this.waitingRoom.length >= 2 * this.waitingRoomCount + 16) this.waitingRoom.filter(isWaitingRoom);
      this.waitingRoom.push(f);
    }
    return false;
  }

  /** The segment's TCP header fields (into `repr`); returns where its TCP header goes, the IP
   *  header being at LINK_HEADROOM. */
  private segmentRepr(f: TcpFlow, seg: OutSegment): number {
    fillTcpRepr(this.repr, seg, f.remotePort, f.guestPort);
    return LINK_HEADROOM + ipFamily(f.family).headerLen;
  }

  /** The TCP header of `repr` at tcpOff in `o` (its checksum over the payload after it, or
   *  partial), then the IP header before it. The end of the TCP header, or -1. */
  private emitTcpIp(f: TcpFlow, o: Uint8Array, tcpOff: number, partial: boolean): number {
    const r = this.repr;
    let hl: number;
    if (f.family === 4) {
      const src = inanyV4(f.remote);
      const dst = inanyV4(f.guest);
      hl = emitTcpV4(o, tcpOff, r, src, dst, partial);
      if (hl < 0) return -1;
      const ip = this.ip4;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = hl + r.payloadLength;
      emitIpv4Header(o, LINK_HEADROOM, ip);
    } else {
      hl = emitTcpV6(o, tcpOff, r, f.remote, f.guest, partial);
      if (hl < 0) return -1;
      const ip = this.ip6;
      ip.src = f.remote;
      ip.dst = f.guest;
      ip.payloadLength = hl + r.payloadLength;
      emitIpv6Header(o, LINK_HEADROOM, ip);
    }
    return tcpOff + hl;
  }

  /**
   * A data segment whose payload goes from the host socket's queue straight into the guest's
   * receive buffers (one kernel copy): its headers are sent now, and the payload of this flow's
   * run of consecutive segments is peeked with one call at completePayloads(). False when it
   * cannot go so (the guest's address not resolved, its buffers short): the copy path sends it.
   */
  private transmitInPlace(f: TcpFlow, seg: OutSegment): boolean {
    let mac = f === this.outputting ? this.outputtingMac : undefined;
    if (!mac) {
      mac = this.guestMac(f);
      if (!mac) return false;
      if (f === this.outputting) this.outputtingMac = mac;
    }
    const at = f.stream!.queueOffset(seg.dataOffset);
    if (this.inPlace && (this.inPlace !== f || at !== this.inPlaceEnd)) this.completePayloads();
    const o = this.headerOut;
    let tcpOff: number;
    let end: number;
    const built = this.built;
    if (f === built.flow && built.repeatedBy(seg)) {
      tcpOff = built.tcpOff;
      end = built.end;
      setTcpSeq(o, tcpOff, seg.seq);
    } else {
      tcpOff = this.segmentRepr(f, seg);
      // The checksum partial: the device leaves it to the guest, or completes it over the payload
      // where it lands.
      end = this.emitTcpIp(f, o, tcpOff, true);
      if (end < 0) return false;
      built.note(f === this.outputting ? f : undefined, seg, tcpOff, end);
    }
    const etherType = f.family === 4 ? EtherType.IPV4 : EtherType.IPV6;
    if (mac !== this.headerOutMac || etherType !== this.headerOutType) {
      const eth = this.ethOut;
      eth.dst = mac;
      eth.etherType = etherType;
      emitEthernetHeader(o, 0, eth);
      this.headerOutMac = mac;
      this.headerOutType = etherType;
    }
    const headers = this.headerViews.of(o, 0, end);
    let sent = this.stack.sendHeaders(headers, seg.dataLength, tcpOff, TCP_CHECKSUM_OFFSET, seg.segmentSize);
    if (sent === 'full') {
      this.completePayloads();
      sent = this.stack.sendHeaders(headers, seg.dataLength, tcpOff, TCP_CHECKSUM_OFFSET, seg.segmentSize);
    }
    if (sent !== 'sent') return false;
    if (!this.inPlace) {
      this.inPlace = f;
      this.inPlaceStart = at;
    }
    this.inPlaceEnd = at + seg.dataLength;
    return true;
  }

  /** Fills the payload of the frames transmitInPlace() sent: one peek from the flow's queue. */
  private completePayloads(): void {
    const f = this.inPlace;
    if (!f) return;
    this.inPlace = undefined;
    const b = f.stream!;
    b.fillFrom = this.inPlaceStart;
    // Short only when the socket failed: those frames reach the guest empty (it drops them, TCP
    // sends them again) and the socket's error event resets the connection.
    if (!this.stack.completePayloads(b)) this.stats.payloadsShort++;
  }

  /** The guest's link address for a segment sent now, when it is resolved (nothing is queued). */
  private guestMac(f: TcpFlow): Uint8Array | undefined {
    const now = this.stack.now();
    if (f.family === 4) {
      const n = this.stack.ipv4.neighbors;
      const a = inanyV4(f.guest);
      return n.lookup(a) ? n.resolve(a, now) : undefined;
    }
    const n = this.stack.ipv6?.neighbors;
    if (!n) return undefined;
    const key = (f.neighborKey ??= ipv6Key(f.guest, 0));
    return n.lookup(key) ? n.resolve(key, now) : undefined;
  }

  /** The guest posted receive buffers: connections that stopped for room go on. */
  linkRoom(): void {
    if (this.waitingRoom.length === 0) return;
    for (let i = 0; i < this.waitingRoom.length; i++) {
      const f = this.waitingRoom.at(i);
      if (!f.waitingRoom) continue;
      f.waitingRoom = false;
      this.markDirty(f);
    }
    this.waitingRoom.clear();
    this.waitingRoomCount = 0;
    this.flush();
  }

  /** Whether a connection waits for the guest's receive buffers (the runtime asks the link). */
  get wantsRoom(): boolean {
    return this.waitingRoomCount > 0;
  }

  /** RFC 9293 §3.10.7.1: a segment for no connection gets a RST (never a RST for a RST). */
  private resetFor(family: 4 | 6, packet: Uint8Array, l4Off: number): void {
    const seg = this.seg.at(packet, l4Off, packet.length - l4Off);
    const r = this.repr;
    r.srcPort = seg.dstPort;
    r.dstPort = seg.srcPort;
    r.window = 0;
    r.options = undefined;
    r.payloadLength = 0;
    if (seg.hasAck) {
      r.seq = seg.ack;
      r.ack = 0;
      r.flags = TcpFlags.RST;
    } else {
      r.seq = 0;
      r.ack = (seg.seq + seg.segmentLength) >>> 0;
      r.flags = TcpFlags.RST | TcpFlags.ACK;
    }
    const b = this.rstBuf;
    this.stats.resetsToGuest++;
    if (family === 4) {
      const src = ipv4Read(packet, 16);
      const dst = ipv4Read(packet, 12);
      emitTcpV4(b, 20, r, src, dst);
      const ip = this.ip4;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = 20;
      emitIpv4Header(b, 0, ip);
      this.stack.ipv4.sendToGuest(b.subarray(0, 40));
    } else {
      const src = packet.subarray(24, 40);
      const dst = packet.subarray(8, 24);
      emitTcpV6(b, IPV6_HEADER_LEN, r, src, dst);
      const ip = this.ip6;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = 20;
      emitIpv6Header(b, 0, ip);
      this.stack.ipv6?.sendToGuest(b.subarray(0, IPV6_HEADER_LEN + 20));
    }
  }

  // ---- timers ----

  pollAt(): number {
    return this.timers.next;
  }

  /** Runs the due timers: at most POLL_BATCH flows (pollAt() stays due for the rest). */
  poll(now: number): void {
    for (let n = 0; n < POLL_BATCH; n++) {
      const f = this.timers.popDue(now);
      if (!f) return;
      f.conn.poll(now);
      this.completePayloads();
      if (!f.live) continue;
      f.stalled = f.conn.unsent > 0; // (a retransmission timeout makes all in flight unsent)
      this.watch(f);
      this.reschedule(f);
    }
  }

  /** The guest's device went away: every connection ends (RST toward the host; the guest that
   *  comes next is a new one). Listeners stay. */
  resetAll(): void {
    for (const f of this.all()) this.drop(f, true);
  }

  /** One of several guests went away: its connections (those whose guest address `owns` says
   *  is its) end as resetAll() ends them all. Returns how many. */
  resetGuest(owns: (guest: Inany) => boolean): number {
    let n = 0;
    for (const f of this.all()) {
      if (!owns(f.guest)) continue;
      this.drop(f, true);
      n++;
    }
    return n;
  }

  /** Closes every connection (RST toward both sides) and the listeners. */
  closeAll(): void {
    for (const l of this.listeners) l.close();
    this.listeners.length = 0;
    for (const f of this.all()) {
      if (f.phase === 'open' && f.conn.state !== TcpState.CLOSED) f.conn.abort();
      this.drop(f, true);
    }
  }

  // ---- the table ----

  private newConnection(family: 4 | 6, now: number, sendBuffer: StreamSendBuffer | undefined): TcpConnection<TcpFlow> {
    // RFC 6528: ISN = a 4 µs clock + a keyed function of the connection; here a random 32 bits
    // per connection on top of the clock (the 4-tuple is not reused within a clock wrap).
    const iss = (Math.floor(now * 250) + ((this.random() * 0x1_0000_0000) >>> 0)) >>> 0;
    const tsOffset = (this.random() * 0x1_0000_0000) >>> 0;
    return new TcpConnection<TcpFlow>(
      family === 4 ? this.config4 : this.config6,
      this.events,
      this,
      sendBuffer ? { iss, tsOffset, sendBuffer } : { iss, tsOffset },
    );
  }

  private markDirty(f: TcpFlow): void {
    if (f.dirty) return;
    f.dirty = true;
    this.dirtyFlows.push(f);
  }

  private insert(f: TcpFlow): void {
    this.table.insert(f);
    if (f.inbound) this.inboundCount++;
  }

  /** Forgets a flow after its connection closed. */
  private remove(f: TcpFlow): void {
    this.closeSocket(f, false);
    this.unlink(f);
  }

  /** Drops a flow now: its host socket closes (with a RST when `reset`). */
  private drop(f: TcpFlow, reset: boolean): void {
    this.closeSocket(f, reset);
    this.unlink(f);
  }

  private closeSocket(f: TcpFlow, reset: boolean): void {
    if (!f.socket) return;
    if (this.inPlace === f) this.completePayloads();
    // What the guest acknowledged goes first: data left unread makes the close a RST.
    if (!reset) f.stream?.settle(true);
    f.socket.close(reset);
    f.socket = undefined;
  }

  private unlink(f: TcpFlow): void {
    if (!f.live) return;
    this.table.remove(f);
    if (f.taken) f.taken.count = 0;
    if (f.waitingRoom) {
      f.waitingRoom = false;
      this.waitingRoomCount--;
    }
    this.settled(f);
    this.timers.remove(f);
    for (const [k, v] of Object.entries(f.conn.stats)) this.closedTotals[k] = (this.closedTotals[k] ?? 0) + v;
    f.conn.release();
    this.memory?.give(this.flowCost);
    if (f.inbound) this.inboundCount--;
  }

  // ---- addresses ----

  /** Which of our addresses `addr` is: a service address, another of ours (IPv4's broadcast and
   *  the like), or none. */
  private ourAddress(family: 4 | 6, addr: Uint8Array): 'gateway' | 'dns' | 'other' | undefined {
    const role = serviceAddress(this.stack.config, family, addr);
    if (role !== undefined) return role;
    return family === 4 && this.stack.isOurIpv4(ipv4Read(addr, 0)) ? 'other' : undefined;
  }

  // ---- status (`vunet ctl`) ----

  /** Closes one forward's listener (`vunet ctl remove`): connections it brought stay open. */
  stopListening(l: TcpListener): void {
    const i = this.listeners.indexOf(l);
    if (i < 0) return;
    this.listeners.splice(i, 1);
    l.close();
  }

  /** The connections, for `vunet ctl flows` (a walk over the table: on request only). */
  describeFlows(now: number): FlowInfo[] {
    const out: FlowInfo[] = [];
    for (const f of this.all()) {
      const bytes = f.conn.dataBytes;
      out.push({
        proto: 'tcp',
        family: f.family,
        direction: f.inbound ? 'inbound' : 'outbound',
        guest: inanyBytes(f.guest).slice(),
        guestPort: f.guestPort,
        remote: inanyBytes(f.remote).slice(),
        remotePort: f.remotePort,
        ...(f.hostEnd ? { host: f.hostEnd.slice(), hostPort: f.remotePort } : {}),
        state: f.phase === 'connecting' ? 'CONNECTING' : tcpStateName(f.conn.state),
        bytesToGuest: bytes.sent,
        bytesFromGuest: bytes.received,
        ageMs: Math.max(0, now - f.createdAt),
      });
    }
    return out;
  }
}

function flowOf(c: TcpConnection<TcpFlow>): TcpFlow {
  return c.owner;
}

/** A 32-bit hash of an address (FNV-1a), read in place: the key of the per-address tables. Never
 *  0 (0 means "none" in TcpFlow.destKey). */
function addressHash(family: 4 | 6, a: Uint8Array, off: number): number {
  let h = (0x811c9dc5 ^ family) >>> 0;
  for (let i = 0, n = ipFamily(family).alen; i < n; i++) h = Math.imul(h ^ a[off + i]!, 0x01000193);
  const hash = h >>> 0;
  return hash === 0 ? 1 : hash;
}

function addressText(family: 4 | 6, a: Uint8Array, off: number): string {
  return formatInany(inanyOf(family, a, off));
}
