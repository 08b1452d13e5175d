// The ICMP echo hook for embedders, after the echo forwarder API proposed for gVisor's netstack
// (google/gvisor pull request 13413): every echo request from the guest is shown to the
// handler while it is being processed. The handler returns true when it consumed the request
// (proxied it, dropped it), false to leave it to the stack; reply() asks the stack for its built-in
// echo reply, at most once, whatever the handler then returns. The request and its views are valid
// only during the call: copy what must outlive it.
//
// Without a handler, or when it returns false without replying, the stack answers requests for its
// own addresses and hands the others to the router's `beyond`.
import { ipFamily } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';

export interface EchoRequest {
  readonly family: 4 | 6;
  /** The whole IP packet, header first (a view valid only during the call). */
  readonly packet: Uint8Array;
  /** Offsets in `packet` of the 4- or 16-byte source and destination addresses. */
  readonly srcOffset: number;
  readonly dstOffset: number;
  /** TTL or hop limit as the guest sent it. */
  readonly ttl: number;
  readonly ident: number;
  readonly seq: number;
  /** The echo data. */
  readonly data: Uint8Array;
  /** The destination is one of vunet's own addresses. */
  readonly toUs: boolean;
  /** Sends the stack's built-in reply (from the request's destination). Idempotent: true when a
   *  reply was sent by this or an earlier call; false after the handler returned. */
  reply(): boolean;
}

export type EchoHandler = (request: EchoRequest) => boolean;

/** The reusable request object a layer fills per echo (no allocation per packet). */
export class EchoRequestSlot implements EchoRequest {
  packet: Uint8Array = new Uint8Array(0);
  srcOffset = 0;
  dstOffset = 0;
  ttl = 0;
  ident = 0;
  seq = 0;
  data: Uint8Array = new Uint8Array(0);
  toUs = false;
  /** The frame the request came in, and where its link source is: the built-in reply's
   *  destination. */
  frame: Uint8Array = new Uint8Array(0);
  srcMacOffset = 0;
  private valid = false;
  private replied = false;

  constructor(
    readonly family: 4 | 6,
    private readonly builtinReply: () => boolean,
  ) {}

  /** Points the slot at a request (views into `frame`, valid until the handler returns). */
  fill(frame: Uint8Array, srcMacOffset: number, packet: Uint8Array, ttl: number, ident: number, seq: number, data: Uint8Array, toUs: boolean): this {
    this.frame = frame;
    this.srcMacOffset = srcMacOffset;
    this.packet = packet;
    ({ srcOff: this.srcOffset, dstOff: this.dstOffset } = ipFamily(this.family));
    this.ttl = ttl;
    this.ident = ident;
    this.seq = seq;
    this.data = data;
    this.toUs = toUs;
    return this;
  }

  /** The link source of the request (6 bytes). */
  get srcMac(): Uint8Array {
    return this.macViews.of(this.frame, this.srcMacOffset, this.srcMacOffset + 6);
  }

  private readonly macViews = new ViewCache();

  reply(): boolean {
    if (this.replied) return true;
    if (!this.valid) return false;
    this.replied = this.builtinReply();
    return this.replied;
  }

  /**
   * Shows the filled request to `handler`, and answers it as the stack would when the handler
   * leaves it (our address, no reply yet). Returns whether it is settled (consumed or answered);
   * an unsettled request for another address goes on to the NAT.
   */
  run(handler: EchoHandler | undefined): boolean {
    this.replied = false;
    this.valid = true;
    let consumed = false;
    try {
      consumed = handler ? handler(this) : false;
    } finally {
      this.valid = false;
    }
    if (consumed) return true;
    if (this.toUs && !this.replied) this.replied = this.builtinReply();
    return this.toUs || this.replied;
  }
}
