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
  /** Counts a control-plane event (debug log). */
  note(name: string, detail?: object): void;
  /** Counts a dropped frame by reason (debug log). */
  drop(reason: string): void;

  // The NAT's hooks (see Stack): unset, their traffic is counted and dropped or refused.
  readonly beyond: ((packet: Uint8Array) => void) | undefined;
  readonly unservedUdp: ((family: 4 | 6, packet: Uint8Array, udpOff: number, ttl: number) => boolean) | undefined;
  readonly tcpInput: ((family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number) => void) | undefined;
  readonly echoHandler: EchoHandler | undefined;
}
