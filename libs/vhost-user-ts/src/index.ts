// vhost-user-ts: a vhost-user backend (device side) library for Node.js. It runs the protocol on a
// unix socket, maps guest memory, and hands a device ready split virtqueues. It knows nothing about
// any particular device type.
export { Backend, GuestMemoryFault, MEMORY_NOT_SHARED_DELAY_MS, ProtocolError, sharedMemoryOptions } from './backend.js';
export type { BackendOptions, GuestMemoryNotShared, MemoryNotSharedKind } from './backend.js';
export { Connection, FramingError } from './connection.js';
export type { ConnectionOptions, Message } from './connection.js';
export type { VhostUserDevice } from './device.js';
export { pollerKicks } from './kicks.js';
export type { KickSource, KickWatch } from './kicks.js';
export { RateLimitedLogger, silentLogger } from './logger.js';
export type { Logger, LogFn, LogLevel, RateLimitOptions } from './logger.js';
export { GuestMemory, MemoryError, SEGMENT_SIZE, newSpan } from './memory.js';
export type { AddedRegion, Segment, Span } from './memory.js';
export * from './protocol.js';
export { VhostUserServer, SocketInUseError, prepareSocketPath } from './server.js';
export type { ServerOptions, ServerStats } from './server.js';
export {
  DescriptorChain,
  MalformedReason,
  MAX_QUEUE_SIZE,
  POP_CHAINS,
  PoppedChains,
  VirtQueue,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
  vringNeedEvent,
} from './virtqueue.js';
export type { QueueStats, RingState, VirtQueueListener } from './virtqueue.js';
