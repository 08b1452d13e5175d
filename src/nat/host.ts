// The host side of the NAT as the NAT sees it: sockets behind small interfaces, so the NAT runs in
// tests against a fake host and in production against the native sockets (src/host/host-net.ts).
// Nothing here imports node:*.
import type { HostError } from './icmp-errors.js';
import type { ScatterViews } from '../wire/bytes.js';

/** A host ICMP echo socket (an unprivileged ping socket, or a raw socket), one per guest flow. */
export interface EchoSocket {
  /** Sends an echo request to `dst` (4 or 16 bytes) with this hop limit; 0 or -errno. */
  send(dst: Uint8Array, seq: number, data: Uint8Array, ttl: number): number;
  close(): void;
}

export interface EchoSocketEvents {
  /** An echo reply from `from` (views valid during the call). `ttl` is -1 when unknown. */
  reply(from: Uint8Array, seq: number, data: Uint8Array, ttl: number): void;
  /** Where a reply's ICMP message (its 8-byte header, then the data) may be received: the
   *  owner's output frame past the IP header's room, so the data lands where the reply to the
   *  guest carries it (the `data` of reply() then lies in it). Absent: a scratch buffer. */
  readonly landing?: Uint8Array;
  /** An error-queue entry about the request with this sequence number and data. */
  error(error: HostError, seq: number, data: Uint8Array): void;
}

export interface HostNet {
  /** Which kind of echo socket the host grants, once probed: for logs and status. */
  readonly echoMode: 'ping' | 'raw' | 'none';
  /** Opens an echo socket; throws an Error with `code` when the host permits none. */
  openEcho(family: 4 | 6, events: EchoSocketEvents): EchoSocket;
}

/** The most datagrams UdpSocket.sendMany takes at once. */
export const SEND_MANY_MAX = 64;

/** A connected host UDP socket, one per guest flow. */
export interface UdpSocket {
  /** Sends a datagram to the connected peer with this hop limit; 0 or -errno. */
  send(data: Uint8Array, ttl: number): number;
  /** Sends `count` (at most SEND_MANY_MAX) datagrams with one call (sendmmsg): datagram i, from
   *  `start`, is buf[offsets[i], +lengths[i]) with hop limit ttls[i]. How many were sent (send()
   *  the next alone to learn why it was not), or -errno when the first failed. Absent: the NAT
   *  sends one at a time. */
  sendMany?: (buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, ttls: Int32Array, start: number, count: number) => number;
  close(): void;
}

export interface UdpSocketEvents {
  /** A datagram from the peer (a view valid during the call). */
  datagram(data: Uint8Array): void;
  /** Where the host should receive datagrams: a view of the NAT's output frame at the payload's
   *  place, so that `datagram` gets them already in the frame (nothing copied). Absent: the
   *  host's own buffer. */
  readonly landing?: Uint8Array;
  /** An error-queue entry about a datagram we sent (its payload, as far as it was quoted). */
  error(error: HostError, data: Uint8Array): void;
}

export interface HostUdp {
  /** Opens a UDP socket connected to `dst`:`port`; throws an Error with `code` on failure. */
  openUdp(family: 4 | 6, dst: Uint8Array, port: number, events: UdpSocketEvents): UdpSocket;
}

/** A host TCP socket: an outbound connection the NAT opened, or one a listener accepted. */
export interface TcpSocket {
  /** Reads into buf[off, off + len): bytes, 0 at end of stream, or -errno (-EAGAIN: nothing yet;
   *  -ECONNRESET...). */
  read(buf: Uint8Array, off: number, len: number): number;
  /** Writes buf[off, off + len) without blocking: bytes written (maybe fewer), or -errno
   *  (-EAGAIN: the socket's send buffer is full; `writable` follows once it has room). */
  write(buf: Uint8Array, off: number, len: number): number;
  /** As write(), of the scatter list views[i][offsets[i], +lengths[i]) for i < count (at most
   *  1024; guest memory). Absent: the owner copies and uses write(). */
  writev?(views: readonly Uint8Array[], offsets: Float64Array, lengths: Uint32Array, count: number): number;
  /** shutdown(SHUT_WR): our FIN to the host peer after what was written. */
  shutdownWrite(): void;
  /** Whether `readable` / `writable` events are wanted. While on, an event comes when something
   *  happened since the last (level- or edge-triggered: a handler reads until -EAGAIN, or the
   *  owner reads again before it next turns `read` on); turned on, one comes soon when the socket
   *  is ready then. While off, nothing need wake the process for it. */
  watch(read: boolean, write: boolean): void;
  /** Closes; `reset` sends the host peer a RST (SO_LINGER 0) instead of a FIN. */
  close(reset: boolean): void;
  /** The socket's receive queue as the connection's send buffer, once open, when the host has
   *  them (HostTcp.streamQueues): then the owner reads with it, never with read(). */
  readonly queue?: StreamQueue | undefined;
}

/**
 * A host TCP socket's receive queue kept as the guest connection's send buffer (passt's design):
 * what the guest has not acknowledged stays in the kernel and is peeked again for a
 * retransmission; what it acknowledged is discarded. Offsets count from the queue's head.
 */
export interface StreamQueue {
  /** Bytes in the queue, or -errno. */
  queued(): number;
  /** Copies the queued bytes [offset, offset + len) into dst at dstOff, leaving them queued:
   *  bytes (fewer at the queue's end), 0 past the end of a finished stream, or -errno. */
  peek(offset: number, dst: Uint8Array, dstOff: number, len: number): number;
  /** As peek(), into the scatter list views[i][offsets[i], +lengths[i]) for i < count (guest
   *  memory, from a DescriptorChain; `views` a view per span, or the one all of them lie in). */
  peekInto(offset: number, views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number;
  /** Takes the first n bytes off the queue unread: bytes or -errno. */
  discard(n: number): number;
  /** The peer's FIN arrived: nothing follows what is queued. */
  readonly ended: boolean;
  /** The socket's error (-errno: a reset...) when it reported one since the last call, else 0. */
  takeError(): number;
}

export interface TcpSocketEvents {
  /** An outbound connect completed (SYN-ACK came back). */
  connected(): void;
  /** An outbound connect failed: errno (ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT...),
   *  with the ICMP error that caused it when the host had one (error queue), else undefined. */
  connectFailed(errno: number, error: HostError | undefined): void;
  /** Data or end of stream or an error is waiting: call read(). */
  readable(): void;
  /** The send buffer has room again. */
  writable(): void;
}

export interface HostTcp {
  /** Open sockets come with their receive queue as a buffer (TcpSocket.queue): the kernel keeps
   *  what the guest has not acknowledged. False or absent: connections buffer it themselves. */
  readonly streamQueues?: boolean;
  /** Starts a non-blocking connect to `dst`:`port` whose SYN carries this TTL / hop limit (later
   *  segments use the default). Events follow; throws an Error with `code` when no socket can be
   *  made at all (EMFILE...). A connect that fails at once (no route on this host) reports
   *  connectFailed on a later tick, never synchronously. */
  connectTcp(family: 4 | 6, dst: Uint8Array, port: number, ttl: number, events: TcpSocketEvents): TcpSocket;
  /** Listens on addr:port (addr null: any address of the family). Throws an Error with `code`
   *  (EADDRINUSE, EACCES...). `accepted` gets each new connection with the client's address. */
  listenTcp(family: 4 | 6, addr: Uint8Array | null, port: number, accepted: (conn: AcceptedTcp) => void): TcpListener;
}

export interface AcceptedTcp {
  readonly family: 4 | 6;
  /** The client's address (4 or 16 bytes) and port. */
  readonly peer: Uint8Array;
  readonly peerPort: number;
  /** The local port it arrived on. */
  readonly localPort: number;
  /** Takes the connection over: events start. */
  attach(events: TcpSocketEvents): TcpSocket;
  /** Refuses it (closes with RST). */
  reject(): void;
}

export interface TcpListener {
  close(): void;
}

/** A bound, unconnected host UDP socket: a port-forward listener (-u). */
export interface BoundUdpSocket {
  /** Sends a datagram to addr:port (4 or 16 bytes); bytes sent or -errno. */
  sendTo(data: Uint8Array, addr: Uint8Array, port: number): number;
  close(): void;
}

export interface BoundUdpEvents {
  /** A datagram from `from`:`port` (views valid during the call; `from` 4 or 16 bytes). */
  datagram(data: Uint8Array, from: Uint8Array, port: number): void;
}

export interface HostUdpListen {
  /** Binds addr:port (null: any address of the family). Throws an Error with `code`
   *  (EADDRINUSE, EACCES...). */
  bindUdp(family: 4 | 6, addr: Uint8Array | null, port: number, events: BoundUdpEvents): BoundUdpSocket;
}
