// Assembles a running vunet: the vhost-user server with the virtio-net device, the stack behind it,
// the DHCPv4, DHCPv6 and router-advertisement services, the optional capture, and the timer that
// runs the stack's poll() at its pollAt(). Everything that touches Node's event loop lives here
// and in the CLI; the stack itself takes time and frames as inputs.
import type { Logger } from 'pino';
import { VhostUserServer } from 'vhost-user-ts';
import { Dhcpv4Server, DHCPV4_CHADDR_OFFSET } from '../dhcp/dhcpv4-server.js';
import { Dhcpv6Server } from '../dhcp/dhcpv6-server.js';
import type { StackConfig } from '../iface/config.js';
import { LINK_LOCAL_ADDRESS } from '../iface/ipv6.js';
import type { FrameLink, FrameSink, RxMeta } from '../iface/link.js';
import { Stack } from '../iface/stack.js';
import type { Clock } from '../iface/stack.js';
import { RouterAdvertiser } from '../ndp/router-advertiser.js';
import { VirtioNetDevice } from '../virtio/net-device.js';
import { MAC_BROADCAST } from '../wire/index.js';
import { PcapWriter } from './pcap.js';

export interface VunetStartOptions {
  socketPath: string;
  config: StackConfig;
  logger: Logger;
  pcapFile?: string;
  /** DHCPv6 assigns addresses (RA flags M=1 O=1) besides SLAAC; default true. */
  dhcpv6Stateful?: boolean;
  clock?: Clock;
}

export class Vunet {
  readonly server: VhostUserServer;
  readonly device: VirtioNetDevice;
  readonly stack: Stack;
  readonly dhcpv4: Dhcpv4Server;
  readonly dhcpv6: Dhcpv6Server | undefined;
  readonly routerAdvertiser: RouterAdvertiser | undefined;
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
      onBatchEnd: () => this.rearm(),
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

    this.server = new VhostUserServer(this.device, { logger: log.child({ part: 'vhost-user' }) });
  }

  /** Starts listening on the socket. Throws (SocketInUseError, ...) when it cannot. */
  static async start(opts: VunetStartOptions): Promise<Vunet> {
    const pcap = opts.pcapFile ? await PcapWriter.open(opts.pcapFile) : undefined;
    const v = new Vunet(opts, pcap);
    try {
      v.server.listen(opts.socketPath);
    } catch (err) {
      await pcap?.close();
      throw err;
    }
    return v;
  }

  /** Runs the stack's timers at the time it asks for. */
  private rearm(): void {
    const at = this.stack.pollAt();
    if (at === this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.stack.poll();
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
    };
  }

  /** Stops serving: disconnects the guest, removes the socket, flushes the capture. */
  async close(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.server.close();
    await this.pcap?.close();
    this.opts.logger.info(this.status(), 'vunet stopped');
  }
}
