// vhost-user wire format. Read QEMU's docs/interop/vhost-user.rst ("Message Specification" and
// "Front-end message types") before editing: every layout below is from there, little-endian.
//
//   0       4       8       12
//   +-------+-------+-------+--------------------+
//   |request| flags | size  | payload (size B)   |   fds travel as SCM_RIGHTS with the header
//   +-------+-------+-------+--------------------+
//
// flags: bits 0-1 version (1), bit 2 reply, bit 3 need_reply.

export const HEADER_SIZE = 12;
export const VERSION = 0x1;
export const FLAG_VERSION_MASK = 0x3;
export const FLAG_REPLY = 1 << 2;
export const FLAG_NEED_REPLY = 1 << 3;

/** The largest payload we accept: a memory table with 8 regions is 8 + 8 * 32 = 264 bytes; the
 *  config space messages (not offered) are bigger. 4 KiB leaves room and bounds our buffers. */
export const MAX_PAYLOAD = 4096;
/** At most this many fds ride on one message (the memory table's 8 regions). */
export const MAX_FDS = 8;

export enum Request {
  GET_FEATURES = 1,
  SET_FEATURES = 2,
  SET_OWNER = 3,
  RESET_OWNER = 4,
  SET_MEM_TABLE = 5,
  SET_LOG_BASE = 6,
  SET_LOG_FD = 7,
  SET_VRING_NUM = 8,
  SET_VRING_ADDR = 9,
  SET_VRING_BASE = 10,
  GET_VRING_BASE = 11,
  SET_VRING_KICK = 12,
  SET_VRING_CALL = 13,
  SET_VRING_ERR = 14,
  GET_PROTOCOL_FEATURES = 15,
  SET_PROTOCOL_FEATURES = 16,
  GET_QUEUE_NUM = 17,
  SET_VRING_ENABLE = 18,
  SEND_RARP = 19,
  NET_SET_MTU = 20,
  SET_BACKEND_REQ_FD = 21,
  IOTLB_MSG = 22,
  SET_VRING_ENDIAN = 23,
  GET_CONFIG = 24,
  SET_CONFIG = 25,
  GET_INFLIGHT_FD = 31,
  SET_INFLIGHT_FD = 32,
  RESET_DEVICE = 34,
  VRING_KICK = 35,
  GET_MAX_MEM_SLOTS = 36,
  ADD_MEM_REG = 37,
  REM_MEM_REG = 38,
  SET_STATUS = 39,
  GET_STATUS = 40,
}

export function requestName(req: number): string {
  return Request[req] ?? `UNKNOWN(${req})`;
}

/** virtio feature bits the transport and ring code care about (virtio 1.2 §6). */
export const Feature = {
  NOTIFY_ON_EMPTY: 24n,
  ANY_LAYOUT: 27n,
  RING_INDIRECT_DESC: 28n,
  RING_EVENT_IDX: 29n,
  /** vhost-user's own bit in the virtio feature word. */
  PROTOCOL_FEATURES: 30n,
  VERSION_1: 32n,
  ACCESS_PLATFORM: 33n,
  RING_PACKED: 34n,
} as const;

export enum ProtocolFeature {
  MQ = 0,
  LOG_SHMFD = 1,
  RARP = 2,
  REPLY_ACK = 3,
  MTU = 4,
  BACKEND_REQ = 5,
  CROSS_ENDIAN = 6,
  CRYPTO_SESSION = 7,
  PAGEFAULT = 8,
  CONFIG = 9,
  BACKEND_SEND_FD = 10,
  HOST_NOTIFIER = 11,
  INFLIGHT_SHMFD = 12,
  RESET_DEVICE = 13,
  INBAND_NOTIFICATIONS = 14,
  CONFIGURE_MEM_SLOTS = 15,
  STATUS = 16,
}

export const bit = (n: bigint | number): bigint => 1n << BigInt(n);

/** Protocol features this library implements (offered when the device asks for them, or always). */
export const IMPLEMENTED_PROTOCOL_FEATURES =
  bit(ProtocolFeature.MQ) | bit(ProtocolFeature.REPLY_ACK) | bit(ProtocolFeature.CONFIGURE_MEM_SLOTS) | bit(ProtocolFeature.STATUS);

/** Bit 8 of a SET_VRING_KICK/CALL/ERR payload: no fd accompanies the message. */
export const VRING_NOFD_MASK = 0x100;
export const VRING_IDX_MASK = 0xff;

/** Sizes of the fixed payloads. */
export const PayloadSize = {
  U64: 8,
  VRING_STATE: 8,
  VRING_ADDR: 40,
  MEM_REGION: 32,
  /** u32 nregions, u32 padding, then regions. */
  MEM_TABLE_HEADER: 8,
  /** u64 padding, then one region (ADD_MEM_REG / REM_MEM_REG). */
  SINGLE_MEM_REGION: 40,
} as const;

/** VHOST_MEMORY_BASELINE_NREGIONS: SET_MEM_TABLE carries at most 8 regions. */
export const MEM_TABLE_MAX_REGIONS = 8;

export interface MemRegionDesc {
  guestPhysAddr: number;
  memorySize: number;
  userspaceAddr: number;
  mmapOffset: number;
}

export interface VringAddr {
  index: number;
  flags: number;
  descUserAddr: number;
  usedUserAddr: number;
  availUserAddr: number;
  logGuestAddr: number;
}

/** A little-endian reader over a received payload; every read is bounds-checked by the caller
 *  having checked `size` against the fixed layout first. u64 values beyond 2^53 are reported as
 *  NaN so they can never alias a valid address. */
export class PayloadReader {
  private view: DataView;
  constructor(
    buf: Uint8Array,
    private readonly size: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  get length(): number {
    return this.size;
  }
  u32(off: number): number {
    return this.view.getUint32(HEADER_SIZE + off, true);
  }
  /** A u64 as a JS number; NaN when it does not fit in 53 bits. */
  u64(off: number): number {
    const lo = this.view.getUint32(HEADER_SIZE + off, true);
    const hi = this.view.getUint32(HEADER_SIZE + off + 4, true);
    if (hi >= 0x200000) return Number.NaN;
    return hi * 0x1_0000_0000 + lo;
  }
  u64big(off: number): bigint {
    return this.view.getBigUint64(HEADER_SIZE + off, true);
  }
  region(off: number): MemRegionDesc {
    return {
      guestPhysAddr: this.u64(off),
      memorySize: this.u64(off + 8),
      userspaceAddr: this.u64(off + 16),
      mmapOffset: this.u64(off + 24),
    };
  }
  vringAddr(): VringAddr {
    return {
      index: this.u32(0),
      flags: this.u32(4),
      descUserAddr: this.u64(8),
      usedUserAddr: this.u64(16),
      availUserAddr: this.u64(24),
      logGuestAddr: this.u64(32),
    };
  }
}

/** Writes a message (header + payload) into `buf`, returning its total length. */
export function encodeHeader(buf: Uint8Array, request: number, flags: number, size: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, HEADER_SIZE);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
}

export function writeU64(buf: Uint8Array, off: number, value: bigint | number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setBigUint64(off, BigInt(value), true);
}

export function writeU32(buf: Uint8Array, off: number, value: number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(off, value >>> 0, true);
}

export function writeRegion(buf: Uint8Array, off: number, r: MemRegionDesc): void {
  writeU64(buf, off, r.guestPhysAddr);
  writeU64(buf, off + 8, r.memorySize);
  writeU64(buf, off + 16, r.userspaceAddr);
  writeU64(buf, off + 24, r.mmapOffset);
}
