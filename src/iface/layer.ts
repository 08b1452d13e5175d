// What the IPv4 and IPv6 layers may ask of the stack they belong to: the narrow interface they are
// given (the Stack implements it), so a layer depends on this file, not on stack.ts, and the stack
// ↔ layer imports form no cycle.
import type { Counters } from './counters.js';
import type { StackConfig } from './config.js';
import type { EchoHandler } from './echo.js';
import type { Log } from './log.js';
import type { MemoryBudget } from './memory-budget.js';

export interface LayerContext {
  readonly config: StackConfig;
  readonly counters: Counters;
  readonly log: Log;
  /** Uniform [0, 1): timer jitter. */
  readonly random: () => number;
  /** Wall-clock ms since the epoch (IPv4 timestamp options). */
  readonly wallClock: () => number;
  /** The memory budget the layer's queues are held in (its accounts by name). */
  readonly memory: MemoryBudget;
  /** The output frame under construction: build a frame here, then transmit(length). */
  readonly out: Uint8Array;
  now(): number;

  /** Sends out[0, len) to the guest (a partial transport checksum from `checksumStart` when > 0). */
  transmit(len: number, checksumStart?: number, checksumOffset?: number): boolean;
  /** Sends a TCP segment larger than the MTU to `mac` (segmentation offload). */
  sendSegmented(packet: Uint8Array, mac: Uint8Array | undefined, etherType: number, transportOff: number, partial: number, segmentSize: number): boolean;
  /** Copies the current guest frame's payload out of guest memory, if the device left it there. */
  loadRxPayload(): void;
  /** Whether debug lines are written (per-packet detail is made only then). */
  readonly debugging: boolean;
  /** Counts a control-plane event (debug log). */
  note(name: string, detail?: object): void;
  /** Counts a dropped frame by reason (debug log). */
  drop(reason: string): void;

  /** What lies beyond the guest link (the NAT). */
  readonly router: Router;
}

/**
 * What lies beyond the guest link (the NAT), as one object the stack is given (Stack.route).
 * Each part is optional: without it, its traffic is counted and dropped, or refused as a host
 * would refuse it.
 */
export interface Router {
  /**
   * Packets for destinations beyond the guest link (the NAT's input): guest packets not addressed
   * to us, and errors we generate about packets that came from beyond. Whole IP packets, valid
   * only during the call. Unset: they are counted and dropped.
   */
  beyond?: (packet: Uint8Array) => void;
  /**
   * UDP to one of our addresses on a port no handler serves: the NAT may take it (datagrams to
   * the gateway reach the host's loopback, as under slirp). Returns whether it did; otherwise the
   * guest gets port unreachable. The checked UDP header sits at `udpOff` in `packet`.
   */
  unservedUdp?: (family: 4 | 6, packet: Uint8Array, udpOff: number, ttl: number) => boolean;
  /**
   * TCP segments from the guest, to our addresses or beyond (the TCP NAT): the whole IP packet
   * (valid only during the call), the TCP header at `l4Off`, checked and checksum-verified, and
   * the packet's TTL / hop limit. Unset: TCP to us gets protocol unreachable, beyond is dropped.
   */
  tcpInput?: (family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number) => void;
  /** Sees every echo request from the guest first (see echo.ts): the NAT's echo proxy. */
  echoHandler?: EchoHandler;
  /** A packet we originated (`tag`: what it was queued with) could not be delivered: its
   *  destination on the guest link did not answer ARP / NDP. */
  unreachable?: (tag: unknown, family: 4 | 6) => void;
}
