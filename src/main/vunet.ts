// Assembles a running vunet: the vhost-user server with the virtio-net device, the stack behind it,
// the DHCPv4, DHCPv6 and router-advertisement services, the optional capture, and the timer that
// runs the stack's poll() at its pollAt(). Everything that touches Node's event loop lives here
// and in the CLI; the stack itself takes time and frames as inputs.
import { readFileSync } from 'node:fs';
import ipaddr from 'ipaddr.js';
import type { Logger } from 'pino';
import { VhostUserServer } from 'vhost-user-ts';
import { Dhcpv4Server, DHCPV4_CHADDR_OFFSET } from '../dhcp/dhcpv4-server.js';
import { Dhcpv6Server } from '../dhcp/dhcpv6-server.js';
import type { StackConfig } from '../iface/config.js';
import { LINK_LOCAL_ADDRESS } from '../iface/ipv6.js';
import type { FrameLink, FrameSink, RxMeta } from '../iface/link.js';
import { Stack } from '../iface/stack.js';
import type { Clock } from '../iface/stack.js';
import { EchoProxy } from '../nat/echo-proxy.js';
import type { HostNet, HostTcp, HostUdp, HostUdpListen } from '../nat/host.js';
import { UdpForwarder } from '../nat/udp-forward.js';
import { TcpNat } from '../nat/tcp-nat.js';
import type { PortForward } from './options.js';
import { DnsForwarder } from '../nat/dns.js';
import type { Resolver } from '../nat/dns.js';
import { UdpNat } from '../nat/udp-nat.js';
import { RouterAdvertiser } from '../ndp/router-advertiser.js';
import { VirtioNetDevice } from '../virtio/net-device.js';
import { IpProtocol, MAC_BROADCAST, bytesEqual } from '../wire/index.js';
import { NodeHostNet } from './host-net.js';
import { PcapWriter } from './pcap.js';

export interface VunetStartOptions {
  socketPath: string;
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
}

export class Vunet {
  readonly server: VhostUserServer;
  readonly device: VirtioNetDevice;
  readonly stack: Stack;
  readonly dhcpv4: Dhcpv4Server;
  readonly dhcpv6: Dhcpv6Server | undefined;
  readonly routerAdvertiser: RouterAdvertiser | undefined;
  readonly echoProxy: EchoProxy;
  readonly udpNat: UdpNat;
  readonly dns: DnsForwarder;
  readonly tcpNat: TcpNat;
  readonly udpForward: UdpForwarder;
  /** The guest's addresses as last seen in its packets (inbound connections go there). */
  private guestSeen4: Uint8Array | undefined;
  private guestSeen6: Uint8Array | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly dhcpOut: Uint8Array;

  private constructor(
    private readonly opts: VunetStartOptions,
    private readonly pcap: PcapWriter | undefined,
  ) {
    const { config, logger } = opts;
    const log = logger;
    this.device = new VirtioNetDevice({
      logger: log.child({ part: 'virtio-net' }),
      onLinkChange: (up) => {
        if (up) this.stack.linkUp();
        this.rearm();
      },
      onBatchEnd: () => {
        this.tcpNat.flush();
        this.rearm();
      },
      onRoom: () => this.tcpNat.linkRoom(),
    });
    const link: FrameLink = pcap
      ? {
          send: (frame) => {
            pcap.record(frame, Date.now());
            return this.device.send(frame);
          },
        }
      : this.device;
    this.stack = new Stack(config, link, { logger: log.child({ part: 'stack' }), ...(opts.clock ? { clock: opts.clock } : {}) });
    const sink: FrameSink = pcap
      ? {
          receive: (frame: Uint8Array, meta: RxMeta) => {
            pcap.record(frame, Date.now());
            this.stack.receive(frame, meta);
          },
        }
      : this.stack;
    this.device.sink = sink;
    this.dhcpOut = new Uint8Array(Math.min(config.mtu, 65507));

    this.dhcpv4 = new Dhcpv4Server(config, { logger: log.child({ part: 'dhcp' }) });
    this.stack.onUdpV4(67, (d, stack) => {
      const reply = this.dhcpv4.handle(d.payload, d.srcIp, this.dhcpOut, stack.now());
      if (!reply) return;
      const mac = reply.dstMac === 'broadcast' ? MAC_BROADCAST : this.dhcpOut.slice(DHCPV4_CHADDR_OFFSET, DHCPV4_CHADDR_OFFSET + 6);
      stack.ipv4.sendUdpV4(config.ipv4.gateway, 67, reply.dstIp, 68, mac, this.dhcpOut.subarray(0, reply.length));
    });

    if (config.ipv6 && this.stack.ipv6) {
      const stateful = opts.dhcpv6Stateful ?? true;
      const v6log = log.child({ part: 'ipv6' });
      this.routerAdvertiser = new RouterAdvertiser(config, { linkLocal: LINK_LOCAL_ADDRESS, stateful, logger: v6log });
      this.stack.ipv6.routerAdvertiser = this.routerAdvertiser;
      const dhcpv6 = new Dhcpv6Server(config, { stateful, logger: log.child({ part: 'dhcpv6' }) });
      this.dhcpv6 = dhcpv6;
      const ipv6 = this.stack.ipv6;
      this.stack.onUdpV6(547, (d, stack) => {
        const src = d.bytes.subarray(d.srcOffset, d.srcOffset + 16);
        const n = dhcpv6.handle(d.payload, src, this.dhcpOut, stack.now());
        if (n <= 0) return;
        ipv6.sendUdp(LINK_LOCAL_ADDRESS, 547, src.slice(), 546, d.bytes.slice(d.srcMacOffset, d.srcMacOffset + 6), this.dhcpOut.subarray(0, n));
      });
    }

    const natLog = log.child({ part: 'nat' });
    const nodeHost = opts.hostNet && opts.hostUdp && opts.hostTcp && opts.hostUdpListen ? undefined : new NodeHostNet(natLog, () => this.rearm());
    const host = opts.hostNet ?? nodeHost!;
    const mapGateway = opts.mapGateway ?? true;
    this.echoProxy = new EchoProxy(this.stack, host, { mapGateway, log: natLog });
    this.stack.echoHandler = this.echoProxy.handle;
    this.udpNat = new UdpNat(this.stack, opts.hostUdp ?? nodeHost!, {
      mapGateway,
      log: natLog,
      ...(opts.udpTimeoutSec ? { idleMs: opts.udpTimeoutSec * 1000 } : {}),
    });
    this.stack.beyond = (p) => this.beyond(p);
    this.dns = new DnsForwarder(this.stack, opts.hostUdp ?? nodeHost!, resolvers(opts.dnsUpstream, natLog), { log: natLog });
    this.dns.attach();
    this.tcpNat = new TcpNat(this.stack, opts.hostTcp ?? nodeHost!, {
      mapGateway,
      log: natLog.child({ proto: 'tcp' }),
      dnsUpstream: (family) => this.dns.resolverFor(family),
      guestAddress: (family) => this.guestAddress(family),
      wantRoom: () => this.device.wantRoom(),
      ...(opts.tcpTimeWaitMs !== undefined ? { tcp: { timeWaitMs: opts.tcpTimeWaitMs } } : {}),
    });
    this.stack.tcpInput = (family, p, off, ttl) => {
      this.noteGuest(family, p);
      this.tcpNat.input(family, p, off, ttl);
    };
    this.stack.ipv4.onUnreachable = (tag) => this.tcpNat.unreachable(tag);
    if (this.stack.ipv6) this.stack.ipv6.onUnreachable = (tag) => this.tcpNat.unreachable(tag);
    this.udpForward = new UdpForwarder(this.stack, opts.hostUdpListen ?? nodeHost!, {
      guestAddress: (family) => this.guestAddress(family),
      log: natLog.child({ proto: 'udp-forward' }),
      ...(opts.udpTimeoutSec ? { idleMs: opts.udpTimeoutSec * 1000 } : {}),
    });
    this.stack.unservedUdp = (family, p, off, ttl) => {
      if (this.udpForward.fromGuest(family, p, off)) return true;
      if (!this.udpNat.takesGateway(family, p)) return false;
      this.udpNat.output(family, p, off, ttl);
      return true;
    };

    this.server = new VhostUserServer(this.device, { logger: log.child({ part: 'vhost-user' }) });
  }

  /** Starts listening on the socket. Throws (SocketInUseError, ...) when it cannot. */
  static async start(opts: VunetStartOptions): Promise<Vunet> {
    const pcap = opts.pcapFile ? await PcapWriter.open(opts.pcapFile) : undefined;
    const v = new Vunet(opts, pcap);
    try {
      v.listenForwards(opts.forwards ?? []);
      v.server.listen(opts.socketPath);
    } catch (err) {
      v.tcpNat.closeAll();
      v.udpForward.closeAll();
      await pcap?.close();
      throw err;
    }
    return v;
  }

  /**
   * Opens the host listeners of the port forwards. A forward on every address listens on both
   * families; its IPv6 half is skipped (with a warning) on a host without IPv6.
   */
  private listenForwards(forwards: readonly PortForward[]): void {
    for (const fw of forwards) {
      const families: (4 | 6)[] = fw.family === 'any' ? [4, 6] : [fw.family];
      for (const family of families) {
        const one = { family, addr: fw.addr, hostPort: fw.hostPort, guestPort: fw.guestPort };
        try {
          if (fw.proto === 'tcp') this.tcpNat.listen([one]);
          else this.udpForward.listen([one]);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code ?? String(err);
          const flag = fw.proto === 'tcp' ? '-t' : '-u';
          if (fw.family === 'any' && family === 6 && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL')) {
            this.opts.logger.warn({ port: fw.hostPort, code }, `no IPv6 on this host: ${flag} ${fw.hostPort} listens on IPv4 only`);
            continue;
          }
          const hint = code === 'EADDRINUSE' ? 'another program uses it; pick another port' : code === 'EACCES' ? 'ports below 1024 need privileges' : 'check the address';
          throw new ForwardError(`cannot listen on ${fw.proto.toUpperCase()} port ${fw.hostPort} for ${flag}: ${code} (${hint})`);
        }
      }
      this.opts.logger.debug({ proto: fw.proto, hostPort: fw.hostPort, guestPort: fw.guestPort }, 'port forward listening');
    }
  }

  /** Packets for beyond the guest link: UDP to the NAT; fragments wait for issue 6, TCP for 5. */
  private beyond(p: Uint8Array): void {
    this.noteGuest(p[0]! >> 4 === 4 ? 4 : 6, p);
    if (p[0]! >> 4 === 4) {
      const ihl = (p[0]! & 0x0f) * 4;
      const fragmented = (p[6]! & 0x3f) !== 0 || p[7] !== 0; // MF or an offset
      if (p[9] === IpProtocol.UDP && !fragmented) {
        if (this.udpForward.fromGuest(4, p, ihl)) return;
        return this.udpNat.output(4, p, ihl, p[8]!);
      }
    } else if (p[6] === IpProtocol.UDP) {
      if (this.udpForward.fromGuest(6, p, 40)) return;
      return this.udpNat.output(6, p, 40, p[7]!);
    }
    this.stack.counters.add('nat.unsupported');
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
  private guestAddress(family: 4 | 6): Uint8Array | undefined {
    if (family === 4) {
      if (this.guestSeen4) return this.guestSeen4;
      const lease = this.dhcpv4.leases().find((l) => l.state === 'bound');
      return lease ? Uint8Array.of(lease.ip >>> 24, (lease.ip >>> 16) & 0xff, (lease.ip >>> 8) & 0xff, lease.ip & 0xff) : undefined;
    }
    return this.guestSeen6;
  }

  /** Runs the stack's timers at the time it asks for. */
  private rearm(): void {
    const at = Math.min(this.stack.pollAt(), this.echoProxy.pollAt(), this.udpNat.pollAt(), this.dns.pollAt(), this.tcpNat.pollAt(), this.udpForward.pollAt());
    if (at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.stack.poll();
      this.echoProxy.poll(this.stack.now());
      this.udpNat.poll(this.stack.now());
      this.dns.poll(this.stack.now());
      this.tcpNat.poll(this.stack.now());
      this.tcpNat.flush();
      this.udpForward.poll(this.stack.now());
      this.rearm();
    }, Math.max(0, Math.ceil(at - this.stack.now())));
  }

  /** Counters for status output and the log. */
  status(): Record<string, unknown> {
    return {
      connected: this.server.connected,
      device: { ...this.device.stats },
      stack: this.stack.counters.snapshot(),
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
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.server.close();
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
function resolvers(upstream: string[] | undefined, log: Logger): Resolver[] {
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
