// What a device built on this library provides. The library runs the vhost-user protocol and hands
// the device queues that are ready (started by SET_VRING_KICK and enabled, with rings resolved in
// guest memory); the device pops chains, pushes used entries and flushes once per batch.
import type { VirtQueue } from './virtqueue.js';

export interface VhostUserDevice {
  /** Device-specific virtio feature bits (e.g. virtio-net's MRG_RXBUF). The library adds the
   *  transport bits it implements: VERSION_1, RING_EVENT_IDX, RING_INDIRECT_DESC and vhost-user's
   *  PROTOCOL_FEATURES. */
  readonly features: bigint;
  /** Number of virtqueues (GET_QUEUE_NUM). Offering more than 2 for virtio-net means MQ. */
  readonly queueCount: number;
  /** Extra vhost-user protocol feature bits the device handles itself (none are needed today). */
  readonly protocolFeatures?: bigint;

  /** A queue became ready. Buffers may already be waiting: the library kicks right after. */
  queueStarted(queue: VirtQueue): void;
  /** The queue stopped (GET_VRING_BASE, disable, disconnect, memory gone). Stop touching it
   *  before returning: its memory may be unmapped next. */
  queueStopped(queue: VirtQueue): void;
  /** The driver kicked a ready queue: process it (pop, pushUsed, flush). */
  queueKicked(queue: VirtQueue): void;

  /** Features acknowledged by the frontend (SET_FEATURES). */
  featuresNegotiated?(features: bigint): void;
  /** A frontend connected / went away (all its queues were stopped first). */
  connected?(): void;
  disconnected?(): void;
  /** SET_STATUS with the virtio device status byte. */
  statusChanged?(status: number): void;
}
