// Cutting a large TCP segment into frames of one MSS, as a NIC's TSO does (the frames of a segment
// for a guest that takes no GSO frames). Read RFC 9293 §3.1 (the header), RFC 791 and RFC 8200
// (the IP lengths), RFC 1071 and RFC 1624 (the sums) and RFC 3168 §6.1.2 (CWR once). Every frame
// repeats the segment's headers but for its IP length (and IPv4 header checksum), its sequence
// number, its flags (FIN and PSH on the last, CWR on the first, as Linux's tcp_gso_segment) and
// its checksum field, which holds the frame's pseudo-header sum. cutFrames() writes the headers
// of a run of such frames where they go (guest memory), all of them with one call; with the
// addon, in native code (a per-frame copy from JavaScript costs more than the frame's whole
// header work).
import type { ScatterViews } from './bytes.js';
import { copyBytes, set16, set32 } from './bytes.js';
import { foldSum } from './checksum.js';
import { TcpFlags } from './tcp.js';

const { FIN, PSH, CWR } = TcpFlags;

/**
 * Where each field of a segment's layout (the Uint32Array cutFrames() reads) lies: `headLen`
 * bytes of the template are each frame's beginning, the IP header at `ip` (IPv4 without options
 * when `v4` is 1, else IPv6 without extension headers), the TCP header of `tcpLen` bytes at `tcp`.
 * The segment carries `payload` bytes cut into frames of `size` (the last one shorter), from
 * sequence number `seq` with `flags`. The template's IP length and checksum, sequence number,
 * flags and checksum fields are zero; `ipSum` is the sum of its IPv4 header so, `tcpSum` that of
 * its TCP header, `pseudoBase` the pseudo-header's sum without the length. `first`: the piece
 * the first frame written is (0 for the segment's first).
 */
export const CutField = {
  headLen: 0,
  ip: 1,
  tcp: 2,
  v4: 3,
  tcpLen: 4,
  size: 5,
  payload: 6,
  seq: 7,
  flags: 8,
  ipSum: 9,
  tcpSum: 10,
  pseudoBase: 11,
  first: 12,
} as const;

/** The length of the layout array (the addon's kCutFields). */
export const CUT_FIELDS = Object.keys(CutField).length;

/**
 * Writes the headers of `count` of the segment's frames from piece `first` on: frame j (piece
 * first + j) at views[j][offsets[j], + headLen) (`views` a view per frame, or the one they all
 * lie in). With `sumAt` >= 0, sums[sumAt + j] gets the sum of frame j's TCP header as written
 * (its checksum field holding the pseudo-header sum), folded: its payload's sum added,
 * complemented, is its checksum. The addon's (useNativeCutFrames) has this type too.
 */
export type CutFrames = (
  views: ScatterViews,
  offsets: Float64Array,
  count: number,
  template: Uint8Array,
  layout: Uint32Array,
  sums: Uint32Array,
  sumAt: number,
) => void;

let nativeCut: CutFrames | undefined;

/** Installs (or with undefined removes) the native cutFrames; returns the one installed before. */
export function useNativeCutFrames(fn: CutFrames | undefined): CutFrames | undefined {
  const was = nativeCut;
  nativeCut = fn;
  return was;
}

/** See CutFrames. */
export const cutFrames: CutFrames = (views, offsets, count, template, layout, sums, sumAt) => {
  if (nativeCut !== undefined) {
    nativeCut(views, offsets, count, template, layout, sums, sumAt);
    return;
  }
  const headLen = layout[CutField.headLen]!;
  const ip = layout[CutField.ip]!;
  const tcp = layout[CutField.tcp]!;
  const v4 = layout[CutField.v4] === 1;
  const hl = layout[CutField.tcpLen]!;
  const size = layout[CutField.size]!;
  const payload = layout[CutField.payload]!;
  const pieces = Math.ceil(payload / size);
  const first = layout[CutField.first]!;
  for (let j = 0; j < count; j++) {
    const dst = views instanceof Uint8Array ? views : views[j]!;
    const at = offsets[j]!;
    const k = first + j;
    copyBytes(dst, at, template, 0, headLen);
    const len = Math.min(size, payload - k * size);
    if (v4) {
      set16(dst, at + ip + 2, 20 + hl + len);
      set16(dst, at + ip + 10, ~foldSum(layout[CutField.ipSum]! + 20 + hl + len) & 0xffff);
    } else {
      set16(dst, at + ip + 4, hl + len);
    }
    const s = (layout[CutField.seq]! + k * size) >>> 0;
    const f = layout[CutField.flags]! & (k === 0 ? 0xff : ~CWR) & (k === pieces - 1 ? 0xff : ~(FIN | PSH)) & 0xff;
    const pseudo = foldSum(layout[CutField.pseudoBase]! + hl + len);
    set32(dst, at + tcp + 4, s);
    dst[at + tcp + 13] = f;
    set16(dst, at + tcp + 16, pseudo);
    if (sumAt >= 0) sums[sumAt + j] = foldSum(layout[CutField.tcpSum]! + (s >>> 16) + (s & 0xffff) + f + pseudo);
  }
};
