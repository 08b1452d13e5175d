// The frame-in/frame-out boundary between the stack and a link: the virtio-net device in
// production, a test device in stack tests.

/** What a link tells the stack about a frame from the guest. */
export interface RxMeta {
  /** The guest left the transport checksum partial (virtio NEEDS_CSUM): its data is trusted as is,
   *  as over any offloading link; there is no wire between us to corrupt it. */
  checksumPartial: boolean;
}

/** The stack side: gets every frame the guest sends. `frame` is valid only during the call. */
export interface FrameSink {
  receive(frame: Uint8Array, meta: RxMeta): void;
}

/** What the stack sends through. */
export interface FrameLink {
  /** Copies `frame` towards the guest; false when it had to be dropped. */
  send(frame: Uint8Array): boolean;
}
