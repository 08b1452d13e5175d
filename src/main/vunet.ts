// Assembles a running vunet: the vhost-user server with the virtio-net device, the stack behind it,
// the DHCPv4, DHCPv6 and router-advertisement services, the optional capture, and the timer that
// runs the stack's poll() at its pollAt(). Everything that touches Node's event loop lives here
// and in the CLI; the stack itself takes time and frames as inputs.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
// performance imported, not the global: Node defines globalThis.performance as a getter, which
// every use of the global name calls (~8 ns a read; the clock is read several times per batch).
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { IntervalHistogram } from 'node:perf_hooks';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { VhostUserServer } from 'vhost-user-ts';
import { Dhcpv4Server, DHCPV4_CHADDR_OFFSET } from '../dhcp/dhcpv4-server.js';
import type { Dhcpv4LeaseInfo } from '../dhcp/dhcpv4-server.js';
import { Dhcpv6Server } from '../dhcp/dhcpv6-server.js';
import type { StackConfig } from '../iface/config.js';
import { LINK_LOCAL_ADDRESS } from '../iface/ipv6.js';
import type { FrameLink, FrameSink, RxMeta } from '../iface/link.js';
import { Stack } from '../iface/stack.js';
import type { Clock } from '../iface/stack.js';
import { BatchClock } from './batch-clock.js';
import type { Log } from '../iface/log.js';
import { LogLimiter, rateLimitedLog } from '../iface/log.js';
import { MemoryBudget } from '../iface/memory-budget.js';
import { EchoProxy } from '../nat/echo-proxy.js';
import { Fence } from '../nat/fence.js';
import { FlowTable } from '../nat/flow-table.js';
import { Switch, macNumber } from '../iface/switch.js';
import type { SwitchPort } from '../iface/switch.js';
import { SimNetwork } from '../sim/network.js';
import type { Topology } from '../sim/topology.js';
import type { Cidr } from '../nat/fence.js';
import type { HostNet, HostTcp, HostUdp, HostUdpListen } from '../nat/host.js';
import { UdpForwarder } from '../nat/udp-forward.js';
import { TcpNat } from '../nat/tcp-nat.js';
import type { PortForward } from './options.js';
import { DnsForwarder } from '../nat/dns.js';
import type { Resolver } from '../nat/dns.js';
import { UdpNat } from '../nat/udp-nat.js';
import { RouterAdvertiser } from '../ra/router-advertiser.js';
import { VirtioNetDevice } from '../virtio/net-device.js';
import {
  Icmpv4Type,
  Icmpv4UnreachableCode,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  IpProtocol,
  MAC_BROADCAST,
  bytesEqual,
  formatIpv4,
  formatIpv6,
  formatMac,
  inanyBytes,
  inanyEqual,
  inanyOf,
  inanyOfIpv4,
  ipFamily,
  ipv4Read,
} from '../wire/index.js';
import type { Inany } from '../wire/index.js';
import { NodeHostNet } from '../host/host-net.js';
import { EdgePoller, edgeKicks } from '../host/edge-poller.js';
import { PcapWriter } from './pcap.js';
import { ControlServer, controlHandler } from './control.js';
import type { FlowInfo } from '../nat/flow-info.js';
import { ipv6KeyBytes } from '../iface/neighbor.js';
import { MAX_FORWARDS, UsageError, forwardsCollide, packageVersion, parseForwardSpecs } from './options.js';
import { nonZeroDrops } from './status.js';
import type { FlowLine, ForwardInfo, LeaseInfo, NeighbourLine, StatusSummary } from './status.js';

const VERSION = packageVersion();

/** Wall-clock ms since the epoch to the microsecond (Date.now() has whole ms): capture times. */
const wallClockMicros = (): number => performance.timeOrigin + performance.now();

export interface VunetStartOptions {
  /** Where to make the vhost-user socket; or `listenFd`, a socket given already listening. */
  socketPath?: string | undefined;
  listenFd?: number;
  config: StackConfig;
  logger: Logger;
  pcapFile?: string;
  /** DHCPv6 assigns addresses (RA flags M=1 O=1) besides SLAAC; default true. */
  dhcpv6Stateful?: boolean;
  /** Pings (and later UDP/TCP) to the gateway addresses reach the host's loopback; default true. */
  mapGateway?: boolean;
  /** The host sockets (default: the native ones). */
  hostNet?: HostNet;
  hostUdp?: HostUdp;
  hostTcp?: HostTcp;
  hostUdpListen?: HostUdpListen;
  /** Inbound port forwards (-t, -u). */
  forwards?: PortForward[];
  /** TIME_WAIT of TCP connections, ms. */
  tcpTimeWaitMs?: number;
  /** Idle time after which a UDP flow's host socket is closed. */
  udpTimeoutSec?: number;
  /** Upstream DNS servers; default: the nameservers of /etc/resolv.conf. */
  dnsUpstream?: string[];
  clock?: Clock;
  /** The memory budget in bytes (default DEFAULT_MAX_MEMORY). */
  maxMemory?: number;
  /** Fence every address of this host from the guest, not only loopback (--deny-host). */
  denyHost?: boolean;
  /** Prefixes the guest may not reach (--deny). */
  deny?: Cidr[];
  /** A simulated network behind the gateway (--topology; see src/sim). */
  topology?: Topology;
  /** More guests on the same segment (--socket given more than once): their sockets' paths. */
  moreSockets?: string[];
  /** Where the control socket listens (`vunet ctl`); none when undefined. */
  controlPath?: string | undefined;
  /** The control socket's permission bits (--socket-mode; default 0600). */
  controlMode?: number | undefined;
}

/** A forward in effect: what was asked, where it listens, and how to stop it. */
interface ActiveForward {
  fw: PortForward;
  /** Where its host sockets listen (one per family), as `forwardListenText` writes them. */
  listen: string[];
  stop: Array<() => void>;
}

/** The memory budget unless --max-memory says otherwise. With the default bounds (8192 TCP flows
 *  at 28 KiB minimum each, 4 MiB of fragments per family, 1 MiB of ARP/NDP queues per family,
 *  8 MiB of RX backlog: 242 MiB) every bounded table fits at once, so the budget decides how far
 *  buffers grow (see ARCHITECTURE.md, "Memory"). */
export const DEFAULT_MAX_MEMORY = 256 * 1024 * 1024;
/** The host's own addresses are read again at most this often (for --deny-host). */
const HOST_ADDRESSES_TTL_MS = 2000;
/** A batch of work (a TX slice, a host event, a timer run) longer than this is counted. */
const LONG_BATCH_MS = 50;

export class Vunet {
  readonly server: VhostUserServer;
  /** The path the vhost-user socket listens on ('' for a given socket without one). */
  listenedOn = '';
  /** The first guest's device and server (the only ones unless --socket was given more than
   *  once), and every guest's. */
  readonly device: VirtioNetDevice;
  readonly devices: readonly VirtioNetDevice[];
  readonly servers: readonly VhostUserServer[];
  /** With several guests: the segment they share, and their ports on it. */
  private readonly switch: Switch | undefined;
  private readonly ports: readonly SwitchPort[];
  readonly stack: Stack;
  readonly dhcpv4: Dhcpv4Server;
  readonly dhcpv6: Dhcpv6Server | undefined;
  readonly routerAdvertiser: RouterAdvertiser | undefined;
  readonly echoProxy: EchoProxy;
  readonly udpNat: UdpNat;
  readonly dns: DnsForwarder;
  readonly tcpNat: TcpNat;
  readonly udpForward: UdpForwarder;
  /** The simulated network, when a topology was given: it takes what it claims before the NAT. */
  readonly sim: SimNetwork | undefined;
  /** The guest's addresses as last seen in its packets (inbound connections go there). */
  private guestSeen4: Uint8Array | undefined;
  private guestSeen6: Uint8Array | undefined;
  readonly memory: MemoryBudget;
  readonly fence: Fence;
  /** Every NAT flow: TCP connections, UDP mappings, echo sessions, UDP forward sessions. */
  readonly flowTable = new FlowTable();
  /** The port forwards in effect (startup ones first, then those `vunet ctl add` made). */
  private readonly active: ActiveForward[] = [];
  /** The control socket, when there is one. */
  control: ControlServer | undefined;
  /** When start() ran (ms since the epoch): the summary's uptime. */
  private readonly startedAt = Date.now();
  /** The native host, unless a test gave every host interface: how pings leave (when the echo
   *  proxy runs on it). */
  private readonly nodeHost: NodeHostNet | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  /** close() was called: no timer is set again (a re-arm or flush may still be queued). */
  private closed = false;
  private flushSoon = false;
  private readonly dhcpOut: Uint8Array;
  /** Internal errors caught at a batch boundary (each cost one frame, event or timer run). */
  private readonly failures = { count: 0, last: '' };
  private readonly loop = { maxBatchMs: 0, longBatches: 0 };
  private readonly loopDelay: IntervalHistogram;
  private readonly limited: LogLimiter;
  /** Time read once per batch of work (the stack's clock unless a test injects one); at the end
   *  of each batch what it sent to the guest is published and what it queued for the host goes. */
  private readonly batchClock = new BatchClock(() => this.batchEnded());
  /** Ends the batch around each turn of the edge-triggered set's events (close()). */
  private readonly unhookBatch: () => void;
  /** What every TX batch ends with, made once (a closure per batch would be garbage per batch). */
  private readonly flushTcp = (): void => this.tcpNat.flush();
  private readonly releaseTaken = (): void => this.tcpNat.releaseTaken();
  private readonly linkRoom = (): void => this.tcpNat.linkRoom();

  private constructor(
    private readonly opts: VunetStartOptions,
    private readonly pcap: PcapWriter | undefined,
  ) {
    const { config, logger } = opts;
    const log = logger;
    // The stack's clock: the test's, else the time read once per batch (see batch-clock.ts).
    const clock: Clock = opts.clock ?? this.batchClock;
    // Every line the stack, the services and the NAT write is rate-limited per message: no guest
    // makes vunet write a line per packet.
    const part = (name: string, extra: object = {}): Log => rateLimitedLog(log.child({ part: name, ...extra }), () => clock.now());
    this.limited = new LogLimiter(log, () => clock.now());
    this.memory = new MemoryBudget(opts.maxMemory ?? DEFAULT_MAX_MEMORY);
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.loopDelay.enable();
    // One device per guest. Several guests share one segment through a learning switch (see
    // iface/switch.ts); their devices then offer no host segmentation offload (a guest's frame may
    // go to another guest, which would have to cut it up) and keep no payload in guest memory.
    const names = ['guest1', ...(opts.moreSockets ?? []).map((_, i) => `guest${i + 2}`)];
    const multi = names.length > 1;
    const devices = names.map((name) =>
      this.newDevice(name, multi, pcap, (up, d) =>
        this.guarded('link change', () => {
          // With several guests the stack's link is up once: a second guest joins a live segment.
          if (up && !devices.some((o) => o !== d && o.linkUp)) this.stack.linkUp();
        }),
      ),
    );
    this.devices = devices;
    this.device = devices[0]!;
    // With --pcap, every frame as it crosses a device (both ways).
    const recorded = (d: VirtioNetDevice): FrameLink =>
      pcap
        ? {
            send: (frame, partial) => {
              pcap.record(frame, wallClockMicros(), partial);
              return d.send(frame, partial);
            },
            hasRoom: () => d.hasRoom(),
            segmentationOffload: (family) => d.segmentationOffload(family),
            get partialChecksums() {
              return d.partialChecksums;
            },
          }
        : d;
    const recordIn = (sink: FrameSink): FrameSink =>
      pcap
        ? {
            receive: (frame: Uint8Array, meta: RxMeta) => {
              const partial = meta.checksumPartial ? { start: meta.checksumStart ?? 0, offset: meta.checksumOffset ?? 0 } : undefined;
              pcap.record(frame, wallClockMicros(), partial);
              sink.receive(frame, meta);
            },
          }
        : sink;
    this.switch = multi ? new Switch(config.mac, { receive: (frame, meta) => this.stack.receive(frame, meta) }, () => clock.now()) : undefined;
    const ports = this.switch ? devices.map((d, i) => this.switch!.attach(names[i]!, recorded(d))) : [];
    this.stack = new Stack(config, this.switch ?? recorded(this.device), { logger: part('stack'), memory: this.memory, clock });
    if (this.switch) devices.forEach((d, i) => (d.sink = recordIn(ports[i]!)));
    else this.device.sink = recordIn(this.stack);
    this.ports = ports;
    this.dhcpOut = new Uint8Array(Math.min(config.mtu, 65507));

    this.dhcpv4 = new Dhcpv4Server(config, { logger: part('dhcp') });
    this.stack.onUdpV4(67, (d, now) => {
      const reply = this.dhcpv4.handle(d.payload, d.srcIp, this.dhcpOut, now);
      if (!reply) return;
      const mac = reply.dstMac === 'broadcast' ? MAC_BROADCAST : this.dhcpOut.slice(DHCPV4_CHADDR_OFFSET, DHCPV4_CHADDR_OFFSET + 6);
      this.stack.ipv4.sendUdpV4(config.ipv4.gateway, 67, reply.dstIp, 68, mac, this.dhcpOut.subarray(0, reply.length));
    });

    if (config.ipv6 && this.stack.ipv6) {
      const stateful = opts.dhcpv6Stateful ?? true;
      const v6log = part('ipv6');
      this.routerAdvertiser = new RouterAdvertiser(config, { linkLocal: LINK_LOCAL_ADDRESS, stateful, logger: v6log });
      this.stack.ipv6.routerAdvertiser = this.routerAdvertiser;
      const dhcpv6 = new Dhcpv6Server(config, { stateful, logger: part('dhcpv6') });
      this.dhcpv6 = dhcpv6;
      const ipv6 = this.stack.ipv6;
      this.stack.onUdpV6(547, (d, now) => {
        const src = d.bytes.subarray(d.srcOffset, d.srcOffset + 16);
        const n = dhcpv6.handle(d.payload, src, this.dhcpOut, now);
        if (n <= 0) return;
        ipv6.sendUdpV6(LINK_LOCAL_ADDRESS, 547, src.slice(), 546, d.bytes.slice(d.srcMacOffset, d.srcMacOffset + 6), this.dhcpOut.subarray(0, n));
      });
    }

    const natLog = part('nat');
    const nodeHost =
      opts.hostNet && opts.hostUdp && opts.hostTcp && opts.hostUdpListen
        ? undefined
        : new NodeHostNet(natLog, {
            before: () => this.batchClock.begin(),
            after: () => this.batchClock.end(),
            failed: (err) => this.failed('a host socket event', err),
            batch: (ms) => this.batchTook(ms),
          });
    this.nodeHost = nodeHost;
    const host = opts.hostNet ?? nodeHost!;
    const mapGateway = opts.mapGateway ?? true;
    this.fence = new Fence({
      denyHost: opts.denyHost ?? false,
      deny: opts.deny ?? [],
      hostAddresses: hostAddresses(),
      now: () => this.stack.now(),
    });
    const fence = this.fence;
    // One flow table for every NAT part (each bounds its own kind within it).
    const flows = this.flowTable;
    this.echoProxy = new EchoProxy(this.stack, host, { mapGateway, fence, flows, log: natLog });
    this.udpNat = new UdpNat(this.stack, opts.hostUdp ?? nodeHost!, {
      mapGateway,
      fence,
      flows,
      log: natLog,
      inBatch: () => this.batchClock.inBatch,
      ...(opts.udpTimeoutSec !== undefined && opts.udpTimeoutSec !== 0 ? { idleMs: opts.udpTimeoutSec * 1000 } : {}),
    });
    this.dns = new DnsForwarder(this.stack, opts.hostUdp ?? nodeHost!, resolvers(opts.dnsUpstream, natLog), { log: natLog });
    this.dns.attach();
    this.tcpNat = new TcpNat(this.stack, opts.hostTcp ?? nodeHost!, {
      mapGateway,
      fence,
      flows,
      memory: this.memory.account('tcp'),
      moreWork: () => this.requestFlush(),
      log: part('nat', { proto: 'tcp' }),
      dnsUpstream: (family) => this.dns.resolverFor(family),
      guestAddress: (family, guest) => this.guestAddress(family, guest),
      wantRoom: () => {
        for (let i = 0; i < this.devices.length; i++) this.devices[i]!.wantRoom();
      },
      ...(opts.tcpTimeWaitMs !== undefined ? { tcp: { timeWaitMs: opts.tcpTimeWaitMs } } : {}),
    });
    this.udpForward = new UdpForwarder(this.stack, opts.hostUdpListen ?? nodeHost!, {
      flows,
      guestAddress: (family, guest) => this.guestAddress(family, guest),
      log: part('nat', { proto: 'udp-forward' }),
      ...(opts.udpTimeoutSec !== undefined && opts.udpTimeoutSec !== 0 ? { idleMs: opts.udpTimeoutSec * 1000 } : {}),
    });
    this.sim = opts.topology
      ? new SimNetwork(opts.topology, {
          // Simulated delays are a few ms: the batch clock's whole milliseconds would let a reply
          // come up to 1 ms early, so the simulation reads the time itself.
          now: () => (opts.clock ? clock.now() : performance.now()),
          toGuest: (family, p) => (family === 4 ? this.stack.ipv4.sendToGuest(p) : this.stack.ipv6?.sendToGuest(p, undefined, true)),
          gatewayAddress: (family) => (family === 4 ? inanyBytes(inanyOfIpv4(this.stack.config.ipv4.gateway)) : this.stack.config.ipv6?.gateway),
        })
      : undefined;
    const sim = this.sim;
    // What lies beyond the guest link, in one piece: the simulated network (what it claims), then
    // the NAT's parts.
    this.stack.route({
      beyond: (p) => this.beyond(p),
      tcpInput: (family, p, off, ttl) => {
        this.noteGuest(family, p);
        // (Segments to our own addresses are the NAT's, and so are those of its connections — a
        // forwarded client may sit where the simulated network claims; the simulation starts
        // beyond us.)
        const dstOff = ipFamily(family).dstOff;
        if (sim?.claims(family, p, dstOff) === true && !this.isOurs(family, p, dstOff) && !this.tcpNat.has(family, p, off)) return sim.input(family, p);
        this.tcpNat.input(family, p, off, ttl);
      },
      unservedUdp: (family, p, off, ttl) => {
        if (this.udpForward.fromGuest(family, p, off)) return true;
        if (!this.udpNat.takesGateway(family, p)) return false;
        this.udpNat.output(family, p, off, ttl);
        return true;
      },
      echoHandler: sim
        ? (r) => {
            if (r.toUs || !sim.claims(r.family, r.packet, r.dstOffset)) return this.echoProxy.handle(r);
            sim.input(r.family, r.packet);
            return true;
          }
        : this.echoProxy.handle,
      unreachable: (tag) => this.tcpNat.unreachable(tag),
    });

    this.servers = devices.map((d, i) => {
      const server = new VhostUserServer(d, {
        logger: log.child({ part: 'vhost-user', ...(multi ? { guest: names[i] } : {}) }),
        // Kicks in the edge-triggered set with the host sockets: no eventfd reads, and a turn's
        // kicks and socket events are one batch (see host/edge-poller.ts).
        kicks: edgeKicks,
      });
      server.on('disconnect', () => this.guarded('device detached', () => (multi ? this.guestLeft(i) : this.detached())));
      // The library says it once per connection: one line, whatever the guest does next.
      server.on('memoryNotShared', (p) => log.error({ part: 'vhost-user', kind: p.kind, memoryBytes: p.memoryBytes }, p.message));
      return server;
    });
    this.server = this.servers[0]!;
    this.unhookBatch = EdgePoller.get().aroundBatch({ begin: () => this.batchClock.begin(), end: () => this.batchClock.end() });
  }

  /**
   * One of several guests went away: its NAT flows end as a single guest's do (connections reset
   * toward the host, UDP and ping flows closed): those whose guest address was its, by the MACs
   * the switch learnt on its port (its DHCP leases, its ARP and NDP entries). Then the switch
   * forgets where those MACs were, so frames to it find nobody (the other guests' ARP / NDP for it
   * then fail, and they tell their users the host is unreachable, as on any segment).
   */
  private guestLeft(i: number): void {
    const port = this.ports[i];
    let flows = 0;
    if (port && this.switch) {
      const owned = this.addressesOf(port);
      if (owned.length > 0) {
        const owns = (guest: Inany): boolean => owned.some((a) => inanyEqual(a, guest));
        flows = this.tcpNat.resetGuest(owns) + this.udpNat.closeGuest(owns) + this.echoProxy.closeGuest(owns) + this.udpForward.forgetGuest(owns);
      }
      this.switch.forget(port);
    }
    this.opts.logger.info({ guest: port?.name, flows }, 'guest detached');
  }

  /** The bound DHCP leases of the MACs in `macs` (as the switch numbers them). */
  private boundLeasesOf(macs: ReadonlySet<number>): Dhcpv4LeaseInfo[] {
    return this.dhcpv4.leases().filter((l) => l.state === 'bound' && macs.has(parseInt(l.mac.replace(/:/g, ''), 16)));
  }

  /** Every address a guest on `port` has used that we know of: bound DHCP leases, ARP and NDP
   *  entries (link-local included) with one of the MACs the switch learnt there. */
  private addressesOf(port: SwitchPort): Inany[] {
    const macs = new Set(this.switch?.macsOf(port) ?? []);
    if (macs.size === 0) return [];
    const out: Inany[] = [];
    for (const l of this.boundLeasesOf(macs)) out.push(inanyOfIpv4(l.ip));
    for (const n of this.stack.ipv4.neighbors.list()) {
      if (n.mac && macs.has(macNumber(n.mac, 0))) out.push(inanyOfIpv4(n.key));
    }
    for (const n of this.stack.ipv6?.neighbors.list() ?? []) {
      if (n.mac && macs.has(macNumber(n.mac, 0))) out.push(inanyOf(6, ipv6KeyBytes(n.key)));
    }
    return out;
  }

  /** A guest's virtio-net device, its batches and events joined to the runtime's. */
  private newDevice(name: string, multi: boolean, pcap: PcapWriter | undefined, linkChange: (up: boolean, d: VirtioNetDevice) => void): VirtioNetDevice {
    const d: VirtioNetDevice = new VirtioNetDevice({
      logger: this.opts.logger.child({ part: 'virtio-net', ...(multi ? { guest: name } : {}) }),
      memory: this.memory.account('backlog'),
      onLinkChange: (up) => linkChange(up, d),
      onBatchStart: () => this.batchClock.begin(),
      inBatch: () => this.batchClock.inBatch,
      onBatchEnd: (sliceMs) => {
        this.guarded('end of a TX batch', this.flushTcp, sliceMs);
        this.batchClock.end();
      },
      // Guest TCP payload goes to host sockets straight from guest memory (one writev per flow
      // per batch); a capture needs every frame whole, so not with --pcap, nor when the frame may
      // be switched to another guest.
      payloadsInPlace: !pcap && !multi,
      hostOffloads: !multi,
      // Consecutive TCP segments join before the stack (a capture shows the guest's frames; a
      // joined segment could not go to another guest).
      coalesce: !pcap && !multi,
      // (Mostly the batch's flush has written it all: no call then.)
      releasePayloads: () => {
        if (this.tcpNat.takenPending()) this.guarded('guest data passed on', this.releaseTaken);
      },
      onRoom: () => this.guarded('receive buffers posted', this.linkRoom),
      onFrameError: (err) => this.failed('a guest frame', err),
    });
    return d;
  }

  /**
   * The guest's device went away (the frontend disconnected): what belonged to that guest ends —
   * its connections are reset toward the host, its UDP and ping flows closed. Listeners stay for
   * the guest that comes next. (A guest that only stops, or stops answering, keeps everything.)
   */
  private detached(): void {
    this.tcpNat.resetAll();
    this.udpNat.closeAll();
    this.echoProxy.closeAll();
    this.udpForward.forgetSessions();
    this.sim?.reset();
    this.guestSeen4 = this.guestSeen6 = undefined;
  }

  /**
   * Runs one batch of work (the end of a TX slice, a link event, a timer run) so that a bug costs
   * that batch only, never the process: the error is counted and logged (rate-limited), the time
   * it took measured (status `loop`), and the timer re-armed.
   */
  private guarded(what: string, fn: () => void, alreadyMs = 0): void {
    const start = performance.now();
    this.batchClock.begin();
    try {
      fn();
    } catch (err) {
      this.failed(what, err);
    } finally {
      this.batchClock.end();
    }
    // A TX slice counts whole: the frames it handled (`alreadyMs`) and what they caused.
    this.batchTook(alreadyMs + performance.now() - start);
  }

  /** The end of the outermost batch: the guest gets what it sent with one publish (and at most
   *  one call); UDP datagrams it queued leave with one sendmmsg per socket. */
  private batchEnded(): void {
    try {
      this.udpNat.flushSends();
    } catch (err) {
      this.failed('UDP sends at the end of a batch', err);
    }
    try {
      for (let i = 0; i < this.devices.length; i++) this.devices[i]!.flush();
    } catch (err) {
      this.failed('publishing frames at the end of a batch', err);
    }
    try {
      // The timer for the earliest deadline the batch left. Here rather than once per turn on a
      // setImmediate, which allocated an Immediate per turn. (What the pollAt()s return is boxed
      // by V8 when not a small integer, Infinity included: a few numbers per batch.)
      this.rearm();
    } catch (err) {
      this.failed('re-arming the timer', err);
    }
  }

  /** A bug was caught at a batch boundary: counted and logged (rate-limited, with the stack). */
  private failed(what: string, err: unknown): void {
    this.failures.count++;
    this.failures.last = `${what}: ${err instanceof Error ? err.message : String(err)}`;
    this.limited.error({ err, during: what }, 'internal error: the event was dropped, vunet goes on');
  }

  private batchTook(ms: number): void {
    if (ms > this.loop.maxBatchMs) this.loop.maxBatchMs = ms;
    if (ms > LONG_BATCH_MS) this.loop.longBatches++;
  }

  /** The TCP NAT left output for a later turn (a bounded flush): go on then. */
  private requestFlush(): void {
    if (this.flushSoon) return;
    this.flushSoon = true;
    setImmediate(() => {
      this.flushSoon = false;
      if (!this.closed) this.guarded('TCP output', () => this.tcpNat.flush());
    });
  }

  /** Starts listening on the socket. Throws (SocketInUseError, ...) when it cannot. */
  static async start(opts: VunetStartOptions): Promise<Vunet> {
    const pcap = opts.pcapFile !== undefined ? await PcapWriter.open(opts.pcapFile) : undefined;
    const v = new Vunet(opts, pcap);
    try {
      v.listenForwards(opts.forwards ?? []);
      if (opts.listenFd !== undefined) v.listenedOn = v.server.listenOn(opts.listenFd);
      else if (opts.socketPath !== undefined) v.server.listen((v.listenedOn = opts.socketPath));
      else throw new Error('Vunet.start: a socketPath or a listenFd');
      (opts.moreSockets ?? []).forEach((path, i) => v.servers[i + 1]!.listen(path));
      if (opts.controlPath !== undefined) {
        v.control = await ControlServer.listen(opts.controlPath, controlHandler(v), {
          log: opts.logger.child({ part: 'control' }),
          ...(opts.controlMode !== undefined ? { mode: opts.controlMode } : {}),
        });
      }
    } catch (err) {
      for (const s of v.servers) s.close();
      v.tcpNat.closeAll();
      v.udpForward.closeAll();
      await pcap?.close();
      throw err;
    }
    return v;
  }

  /**
   * Opens the host listeners of the port forwards, one log line each. A forward on every address
   * listens on both families; its IPv6 half is skipped (with a warning) on a host without IPv6.
   * All or nothing: when one cannot listen, those this call opened are closed again and a
   * ForwardError says why.
   */
  private listenForwards(forwards: readonly PortForward[]): void {
    const opened: ActiveForward[] = [];
    try {
      for (const fw of forwards) opened.push(this.listenForward(fw));
    } catch (err) {
      for (const a of opened) for (const stop of a.stop) stop();
      throw err;
    }
    for (const a of opened) {
      this.active.push(a);
      for (const where of a.listen) {
        this.opts.logger.info(
          { proto: a.fw.proto, listen: where, guestPort: a.fw.guestPort },
          `port forward listening: ${a.fw.proto.toUpperCase()} ${where} → guest port ${a.fw.guestPort}`,
        );
      }
    }
  }

  private listenForward(fw: PortForward): ActiveForward {
    const families: (4 | 6)[] = fw.family === 'any' ? [4, 6] : [fw.family];
    const a: ActiveForward = { fw, listen: [], stop: [] };
    if (fw.guest !== undefined && !this.ports.some((p) => p.name === fw.guest) && fw.guest !== 'guest1') {
      throw new ForwardError(
        `${fw.proto === 'tcp' ? '-t' : '-u'} ${fw.hostPort}: no ${fw.guest} here (${this.devices.length} guest${this.devices.length > 1 ? 's' : ''}: one per --socket)`,
      );
    }
    for (const family of families) {
      const one = { family, addr: fw.addr, hostPort: fw.hostPort, guestPort: fw.guestPort, ...(fw.guest !== undefined ? { guest: fw.guest } : {}) };
      try {
        if (fw.proto === 'tcp') {
          const [l] = this.tcpNat.listen([one]);
          a.stop.push(() => this.tcpNat.stopListening(l!));
        } else {
          const [u] = this.udpForward.listen([one]);
          a.stop.push(() => this.udpForward.stopListening(u!));
        }
        a.listen.push(forwardListenText(family, fw.addr, fw.hostPort));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const flag = fw.proto === 'tcp' ? '-t' : '-u';
        if (fw.family === 'any' && family === 6 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
          this.opts.logger.warn({ port: fw.hostPort, code }, `no IPv6 on this host: ${flag} ${fw.hostPort} listens on IPv4 only`);
          continue;
        }
        for (const stop of a.stop) stop();
        const hint =
          code === 'EADDRINUSE' ? 'another program uses it; pick another port' : code === 'EACCES' ? 'ports below 1024 need privileges' : 'check the address';
        throw new ForwardError(`cannot listen on ${fw.proto.toUpperCase()} port ${fw.hostPort} for ${flag}: ${code} (${hint})`);
      }
    }
    return a;
  }

  // ---- the control socket's requests (see control-commands.ts) ----

  /** The forwards in effect. */
  forwards(): ForwardInfo[] {
    return this.active.map(forwardInfo);
  }

  /**
   * Adds the forwards of one -t/-u spec while running (`vunet ctl add`): validated as on the
   * command line (UsageError), refused when a host port is forwarded already or the total would
   * pass MAX_FORWARDS, then listened on all or nothing (ForwardError). Returns what was added.
   */
  addForwards(proto: PortForward['proto'], spec: string): ForwardInfo[] {
    const flag = proto === 'tcp' ? '--tcp-forward' : '--udp-forward';
    const wanted = parseForwardSpecs(proto, spec);
    if (this.active.length + wanted.length > MAX_FORWARDS) {
      throw new UsageError(`${flag}: at most ${MAX_FORWARDS} ports may be forwarded in all (${this.active.length} are): remove some first`);
    }
    for (const w of wanted) {
      const clash = this.active.find((a) => forwardsCollide(a.fw, w));
      if (clash) throw new UsageError(`${flag}: host port ${w.hostPort} is forwarded already (${forwardInfo(clash).spec})`);
    }
    const before = this.active.length;
    this.listenForwards(wanted);
    return this.active.slice(before).map(forwardInfo);
  }

  /**
   * Removes the forwards of one -t/-u spec (`vunet ctl remove`): each port of it must be
   * forwarded with the same address; the guest port may be left out. Connections they brought
   * stay open; the next ones are refused by the host. Returns what was removed.
   */
  removeForwards(proto: PortForward['proto'], spec: string): ForwardInfo[] {
    const flag = proto === 'tcp' ? '--tcp-forward' : '--udp-forward';
    const wanted = parseForwardSpecs(proto, spec);
    const found: ActiveForward[] = [];
    for (const w of wanted) {
      const a = this.active.find((x) => x.fw.proto === w.proto && x.fw.hostPort === w.hostPort && x.fw.family === w.family && sameAddress(x.fw.addr, w.addr));
      if (!a) throw new UsageError(`${flag}: host port ${w.hostPort} is not forwarded${w.addr ? ' on that address' : ''} (see vunet ctl forwards)`);
      found.push(a);
    }
    for (const a of found) {
      for (const stop of a.stop) stop();
      this.active.splice(this.active.indexOf(a), 1);
      for (const where of a.listen) {
        this.opts.logger.info({ proto: a.fw.proto, listen: where, guestPort: a.fw.guestPort }, `port forward removed: ${a.fw.proto.toUpperCase()} ${where}`);
      }
    }
    return found.map(forwardInfo);
  }

  /** The DHCP leases (DHCPv4; DHCPv6 keeps none the guest needs listed). */
  leases(): LeaseInfo[] {
    return this.dhcpv4.leases().map((l) => ({
      family: 4,
      mac: l.mac,
      ip: formatIpv4(l.ip),
      state: l.state,
      expiresInSec: Math.max(0, Math.round((l.expires - this.stack.now()) / 1000)),
      ...(l.hostname !== undefined ? { hostname: l.hostname } : {}),
    }));
  }

  /** The neighbour caches (ARP and NDP): the guest's addresses on the link. */
  neighbours(): NeighbourLine[] {
    const now = this.stack.now();
    const out: NeighbourLine[] = this.stack.ipv4.neighbors.list().map((n) => ({
      family: 4,
      ip: formatIpv4(n.key),
      state: n.state,
      mac: n.mac ? formatMac(n.mac) : null,
      timerInMs: Math.max(0, Math.round(n.deadline - now)),
    }));
    for (const n of this.stack.ipv6?.neighbors.list() ?? []) {
      out.push({
        family: 6,
        ip: formatIpv6(ipv6KeyBytes(n.key)),
        state: n.state,
        mac: n.mac ? formatMac(n.mac) : null,
        timerInMs: Number.isFinite(n.deadline) ? Math.max(0, Math.round(n.deadline - now)) : null,
      });
    }
    return out;
  }

  /** The NAT's flows: TCP connections, UDP flows, ping flows, forwarded UDP sessions. */
  flows(): FlowLine[] {
    const now = this.stack.now();
    return [
      ...this.tcpNat.describeFlows(now),
      ...this.udpNat.describeFlows(now),
      ...this.echoProxy.describeFlows(now),
      ...this.udpForward.describeFlows(now),
    ].map(flowLine);
  }

  /** The short summary for a person (`vunet ctl status`, SIGUSR1). */
  summary(): StatusSummary {
    const ipv4 = new Set<string>();
    for (const l of this.dhcpv4.leases()) if (l.state === 'bound') ipv4.add(formatIpv4(l.ip));
    if (this.guestSeen4) ipv4.add(formatIpv4(ipv4Read(this.guestSeen4, 0)));
    const ipv6 = new Set<string>();
    if (this.guestSeen6) ipv6.add(formatIpv6(this.guestSeen6));
    const mac = this.stack.guestMac;
    const flat: Record<string, number> = { ...this.stack.counters.snapshot() };
    const add = (prefix: string, o: object): void => {
      for (const [k, v] of Object.entries(o)) if (typeof v === 'number') flat[`${prefix}.${k}`] = v;
    };
    add('device', this.device.stats);
    add('tcp', this.tcpNat.stats);
    add('udp', this.udpNat.stats);
    add('echo', this.echoProxy.stats);
    add('dns', this.dns.stats);
    add('udpForward', this.udpForward.stats);
    add('fence', this.fence.stats);
    flat.failures = this.failures.count;
    return {
      version: VERSION,
      uptimeSec: Math.round((Date.now() - this.startedAt) / 1000),
      attached: this.servers.some((s) => s.connected),
      linkUp: this.devices.some((d) => d.linkUp),
      guest: { mac: mac ? formatMac(mac) : null, ipv4: [...ipv4], ipv6: [...ipv6] },
      icmp: this.nodeHost && !this.opts.hostNet ? this.nodeHost.echoMode : 'fake',
      forwards: this.active.flatMap((a) => a.listen.map((where) => `${a.fw.proto.toUpperCase()} ${where} → guest port ${a.fw.guestPort}`)),
      flows: {
        tcp: this.tcpNat.flowCount,
        udp: this.udpNat.flowCount,
        icmp: this.echoProxy.flowCount,
        udpForward: this.udpForward.sessionCount,
        tcpStates: this.tcpNat.states(),
      },
      drops: nonZeroDrops(flat),
    };
  }

  /** Whether the `family` address at p[off] is one of the stack's own. */
  private isOurs(family: 4 | 6, p: Uint8Array, off: number): boolean {
    return family === 4 ? this.stack.isOurIpv4(ipv4Read(p, off)) : this.stack.ipv6?.isOurs(p, off) === true;
  }

  /** Packets for beyond the guest link (UDP and the rest the stack leaves to the NAT). */
  private beyond(p: Uint8Array): void {
    const family = p[0]! >> 4 === 4 ? 4 : 6;
    this.noteGuest(family, p);
    const v4 = family === 4;
    const l4 = v4 ? (p[0]! & 0x0f) * 4 : 40;
    const udp = v4 ? p[9] === IpProtocol.UDP && (p[6]! & 0x3f) === 0 && p[7] === 0 /* not a fragment */ : p[6] === IpProtocol.UDP;
    // The guest's answers to a UDP forward's client first (the client may sit where the simulated
    // network claims), then the simulated network, then the NAT.
    if (udp && this.udpForward.fromGuest(family, p, l4)) return;
    if (this.sim?.claims(family, p, ipFamily(family).dstOff) === true) return this.sim.input(family, p);
    if (udp) return this.udpNat.output(family, p, l4, v4 ? p[8]! : p[7]!);
    this.stack.counters.add('nat.unsupported');
    // A protocol the NAT cannot carry (GRE, SCTP, UDP-Lite, ESP...: host sockets relay TCP, UDP and
    // ping only): the guest hears so at once, as from a router whose filter drops it —
    // communication administratively prohibited from the gateway — rather than waiting out a
    // timeout. Not about ICMP (an error or an answer of the guest's); the ICMP parts never answer
    // an error, a group destination or a later fragment, and rate-limit the rest.
    if (v4) {
      if (p[9] !== IpProtocol.ICMP) this.stack.ipv4.icmp.errorToGuest(p, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.ADMIN_PROHIBITED, 0);
    } else if (p[6] !== IpProtocol.ICMPV6) {
      this.stack.ipv6?.icmp.errorToGuest(p, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADMIN_PROHIBITED, 0);
    }
  }

  /** Remembers the guest's unicast source address of a family (inbound forwards go there). */
  private noteGuest(family: 4 | 6, p: Uint8Array): void {
    if (family === 4) {
      const seen = this.guestSeen4;
      if (!seen || !bytesEqual(seen, 0, p, 12, 4)) this.guestSeen4 = p.slice(12, 16);
    } else if ((p[8]! & 0xe0) === 0x20 || (p[8]! & 0xfe) === 0xfc || p[8] === 0xfe) {
      // global, unique local, or site-local (slirp's fec0::/64) — not link-local fe80::/10
      if (p[8] === 0xfe && (p[9]! & 0xc0) === 0x80) return;
      const seen = this.guestSeen6;
      if (!seen || !bytesEqual(seen, 0, p, 8, 16)) this.guestSeen6 = p.slice(8, 24);
    }
  }

  /** The guest's address for inbound connections: last seen, else its DHCP lease. */
  /**
   * With several guests: the `family` address of the one named (guest1, guest2, ...), found from
   * the MACs the switch learnt on its port: its bound DHCP lease, or the IPv6 neighbour entry (not
   * link-local) with one of those MACs.
   */
  private addressOn(family: 4 | 6, name: string): Uint8Array | undefined {
    const port = this.ports.find((p) => p.name === name);
    if (!port || !this.switch) return undefined;
    const macs = new Set(this.switch.macsOf(port));
    if (macs.size === 0) return undefined;
    if (family === 4) {
      const lease = this.boundLeasesOf(macs)[0];
      return lease ? inanyBytes(inanyOfIpv4(lease.ip)).slice() : undefined;
    }
    for (const n of this.stack.ipv6?.neighbors.list() ?? []) {
      const a = ipv6KeyBytes(n.key);
      if (n.mac && macs.has(macNumber(n.mac, 0)) && !(a[0] === 0xfe && (a[1]! & 0xc0) === 0x80)) return a;
    }
    return undefined;
  }

  private guestAddress(family: 4 | 6, guest?: string): Uint8Array | undefined {
    if (this.switch) return this.addressOn(family, guest ?? 'guest1');
    if (family === 4) {
      if (this.guestSeen4) return this.guestSeen4;
      const lease = this.dhcpv4.leases().find((l) => l.state === 'bound');
      return lease ? Uint8Array.of(lease.ip >>> 24, (lease.ip >>> 16) & 0xff, (lease.ip >>> 8) & 0xff, lease.ip & 0xff) : undefined;
    }
    return this.guestSeen6;
  }

  /**
   * Runs the stack's timers at the time it asks for. A timer already set for no later than that
   * stays: when it fires early it polls (nothing is due, cheap) and sets the next one. So a bulk
   * transfer, whose retransmission deadline moves forward with every ACK, does not re-arm a timer
   * per batch.
   */
  private rearm(): void {
    if (this.closed) return; // a re-arm queued before close(): the timer would keep the process up
    const at = Math.min(
      this.stack.pollAt(),
      this.echoProxy.pollAt(),
      this.udpNat.pollAt(),
      this.dns.pollAt(),
      this.tcpNat.pollAt(),
      this.udpForward.pollAt(),
      this.sim?.pollAt() ?? Infinity,
    );
    if (at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.timerAt = Infinity;
        this.guarded('timers', () => {
          const now = this.stack.now();
          this.stack.poll();
          this.echoProxy.poll(now);
          this.udpNat.poll(now);
          this.dns.poll(now);
          this.tcpNat.poll(now);
          this.tcpNat.flush();
          this.udpForward.poll(now);
          this.sim?.poll(this.sim.now());
        });
      },
      Math.max(0, Math.ceil(at - this.stack.now())),
    );
  }

  /** Counters for status output and the log. */
  status(): Record<string, unknown> {
    const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
    return {
      connected: this.server.connected,
      device: { ...this.device.stats, queues: this.device.queueStats() },
      ...(this.switch
        ? {
            guests: this.ports.map((p, i) => ({ name: p.name, connected: this.servers[i]!.connected, ...p.stats, device: { ...this.devices[i]!.stats } })),
            switch: { ...this.switch.stats },
          }
        : {}),
      memory: this.memory.snapshot(),
      fence: { ...this.fence.stats },
      loop: {
        maxBatchMs: Math.round(this.loop.maxBatchMs * 100) / 100,
        batchesOver50ms: this.loop.longBatches,
        delayMaxMs: ms(this.loopDelay.max),
        delayP99Ms: ms(this.loopDelay.percentile(99)),
        ...EdgePoller.get().stats,
      },
      failures: { ...this.failures },
      stack: this.stack.counters.snapshot(),
      reassembly: { ipv4: { ...this.stack.ipv4.reassemblyStats }, ...(this.stack.ipv6 ? { ipv6: { ...this.stack.ipv6.reassemblyStats } } : {}) },
      dhcpv4: { ...this.dhcpv4.stats, leases: this.dhcpv4.leases().length },
      ...(this.dhcpv6 ? { dhcpv6: { ...this.dhcpv6.stats } } : {}),
      ...(this.routerAdvertiser ? { ra: { ...this.routerAdvertiser.stats } } : {}),
      echo: { ...this.echoProxy.stats, flows: this.echoProxy.flowCount },
      udp: { ...this.udpNat.stats, flows: this.udpNat.flowCount },
      dns: { ...this.dns.stats },
      udpForward: { ...this.udpForward.stats, sessions: this.udpForward.sessionCount },
      tcp: { ...this.tcpNat.stats, flows: this.tcpNat.flowCount, states: this.tcpNat.states(), endpoints: this.tcpNat.endpointTotals() },
    };
  }

  /** Stops serving: disconnects the guest, removes the socket, flushes the capture. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.loopDelay.disable();
    this.control?.close();
    for (const s of this.servers) s.close();
    this.unhookBatch();
    this.echoProxy.closeAll();
    this.udpNat.closeAll();
    this.dns.closeAll();
    this.tcpNat.closeAll();
    this.udpForward.closeAll();
    await this.pcap?.close();
    this.opts.logger.info(this.status(), 'vunet stopped');
  }
}

/** A port forward's host port cannot be used. */
export class ForwardError extends Error {}

/** The resolvers queries go to: --dns, else the nameservers of /etc/resolv.conf. */
function resolvers(upstream: string[] | undefined, log: Log): Resolver[] {
  let list = upstream ?? [];
  if (list.length === 0) {
    try {
      list = readFileSync('/etc/resolv.conf', 'utf8')
        .split('\n')
        .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
        .filter((a): a is string => a !== undefined);
    } catch {
      list = [];
    }
  }
  const out: Resolver[] = [];
  for (const text of list) {
    const bare = text.split('%')[0]!;
    if (!ipaddr.isValid(bare)) continue;
    const a = ipaddr.parse(bare);
    out.push({ family: a.kind() === 'ipv4' ? 4 : 6, addr: Uint8Array.from(a.toByteArray()) });
  }
  log.info({ resolvers: list }, 'DNS queries to the DNS addresses are forwarded to these resolvers');
  return out;
}

/** The host's own addresses (4 or 16 bytes each) for --deny-host, read again every couple of
 *  seconds (interfaces come and go; one read per datagram would be a syscall per packet). */
function hostAddresses(): () => readonly Uint8Array[] {
  let list: Uint8Array[] = [];
  let readAt = -Infinity;
  return () => {
    const now = performance.now();
    if (now - readAt < HOST_ADDRESSES_TTL_MS) return list;
    readAt = now;
    list = [];
    for (const addrs of Object.values(networkInterfaces())) {
      for (const a of addrs ?? []) {
        const bare = a.address.split('%')[0]!;
        if (ipaddr.isValid(bare)) list.push(Uint8Array.from(ipaddr.parse(bare).toByteArray()));
      }
    }
    return list;
  };
}

/** Whether two forward addresses are the same (null: every address of both families). */
function sameAddress(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && bytesEqual(a, 0, b, 0, a.length);
}

function forwardInfo(a: ActiveForward): ForwardInfo {
  const { proto, addr, family, hostPort, guestPort } = a.fw;
  const where = addr === null ? '' : family === 4 ? `${formatIpv4(ipv4Read(addr, 0))}:` : `[${formatIpv6(addr)}]:`;
  return { proto, spec: `${where}${hostPort}:${guestPort}`, listen: [...a.listen], hostPort, guestPort };
}

/** A flow as `vunet ctl flows` shows it: addresses as text, times in seconds. */
function flowLine(f: FlowInfo): FlowLine {
  const end = (addr: Uint8Array, port: number): string => (addr.length === 4 ? `${formatIpv4(ipv4Read(addr, 0))}:${port}` : `[${formatIpv6(addr)}]:${port}`);
  return {
    proto: f.proto,
    direction: f.direction,
    state: f.state,
    guest: end(f.guest, f.guestPort),
    remote: end(f.remote, f.remotePort),
    ...(f.host ? { host: end(f.host, f.hostPort ?? 0) } : {}),
    ...(f.bytesToGuest !== undefined ? { bytesToGuest: f.bytesToGuest } : {}),
    ...(f.bytesFromGuest !== undefined ? { bytesFromGuest: f.bytesFromGuest } : {}),
    ...(f.ageMs !== undefined ? { ageSec: Math.round(f.ageMs / 100) / 10 } : {}),
    ...(f.idleMs !== undefined ? { idleSec: Math.round(f.idleMs / 100) / 10 } : {}),
  };
}

/** Where a forward listens, as a person writes it: 0.0.0.0:8080, [::]:8080, 127.0.0.1:8080. */
function forwardListenText(family: 4 | 6, addr: Uint8Array | null, port: number): string {
  if (family === 4) return `${addr === null ? '0.0.0.0' : formatIpv4(ipv4Read(addr, 0))}:${port}`;
  return `[${addr === null ? '::' : formatIpv6(addr)}]:${port}`;
}
