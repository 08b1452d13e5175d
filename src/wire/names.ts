// Domain names in DNS wire format, for the option carriers that use them: NDP DNSSL (RFC 8106
// section 5.2, uncompressed), DHCPv4 domain search (RFC 3397, compressed), DHCPv6 domain list
// (RFC 8415 section 10, uncompressed). Read RFC 1035 sections 3.1 (labels) and 4.1.4 (compression)
// before editing. Not on the per-packet path: these allocate strings.
//
// This file is internal to src/wire (index.ts does not re-export it).

const MAX_NAME = 255;
const MAX_LABEL = 63;

/** Splits "example.com." into labels; null if a label is empty, too long, or not ASCII. */
function labelsOf(name: string): string[] | null {
  const trimmed = name.endsWith('.') ? name.slice(0, -1) : name;
  if (trimmed.length === 0) return [];
  const labels = trimmed.split('.');
  for (const l of labels) {
    if (l.length === 0 || l.length > MAX_LABEL || !/^[\x21-\x7e]+$/.test(l)) return null;
  }
  return labels;
}

/** Wire length of a name without compression, or -1 when invalid. */
export function dnsNameLength(name: string): number {
  const labels = labelsOf(name);
  if (labels === null) return -1;
  let n = 1;
  for (const l of labels) n += 1 + l.length;
  return n <= MAX_NAME ? n : -1;
}

/** Writes `name` uncompressed at `off`, not past `end`; returns the new offset or -1. */
export function encodeDnsName(buf: Uint8Array, off: number, end: number, name: string): number {
  if (off < 0) return -1;
  const labels = labelsOf(name);
  const n = dnsNameLength(name);
  if (labels === null || n < 0 || off + n > Math.min(end, buf.length)) return -1;
  for (const l of labels) {
    buf[off++] = l.length;
    for (let i = 0; i < l.length; i++) buf[off++] = l.charCodeAt(i);
  }
  buf[off++] = 0;
  return off;
}

/**
 * Writes a list of names with RFC 1035 compression (pointers are relative to `base`, the start of
 * the encoded list, as RFC 3397 section 2 requires); returns the new offset or -1.
 */
export function encodeDnsNamesCompressed(buf: Uint8Array, base: number, end: number, names: string[]): number {
  end = Math.min(end, buf.length);
  let off = base;
  const seen = new Map<string, number>(); // lower-cased suffix -> offset from base
  for (const name of names) {
    const labels = labelsOf(name);
    if (labels === null || dnsNameLength(name) < 0) return -1;
    let i = 0;
    for (; i < labels.length; i++) {
      const suffix = labels.slice(i).join('.').toLowerCase();
      const at = seen.get(suffix);
      if (at !== undefined) {
        if (off + 2 > end) return -1;
        buf[off++] = 0xc0 | (at >>> 8);
        buf[off++] = at & 0xff;
        break;
      }
      if (off - base < 0x3fff) seen.set(suffix, off - base);
      const l = labels[i]!;
      if (off + 1 + l.length > end) return -1;
      buf[off++] = l.length;
      for (let k = 0; k < l.length; k++) buf[off++] = l.charCodeAt(k);
    }
    if (i === labels.length) {
      if (off + 1 > end) return -1;
      buf[off++] = 0;
    }
  }
  return off;
}

/**
 * Reads one name at `off` (bounded by `end`); compression pointers are followed when `base` >= 0,
 * relative to it. Returns the offset after the name, or -1 when malformed. The name (without the
 * trailing dot; "" for the root) is pushed onto `out`.
 */
export function decodeDnsName(buf: Uint8Array, off: number, end: number, base: number, out: string[]): number {
  end = Math.min(end, buf.length);
  let pos = off;
  let after = -1;
  let jumps = 0;
  let name = '';
  let wire = 0;
  for (;;) {
    if (pos >= end) return -1;
    const len = buf[pos]!;
    if (len === 0) {
      pos++;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (base < 0 || pos + 1 >= end || ++jumps > 64) return -1;
      const target = base + (((len & 0x3f) << 8) | buf[pos + 1]!);
      if (after < 0) after = pos + 2;
      pos = target;
      continue;
    }
    if (len > MAX_LABEL || pos + 1 + len > end) return -1;
    wire += 1 + len;
    if (wire > MAX_NAME) return -1;
    let label = '';
    for (let i = 0; i < len; i++) label += String.fromCharCode(buf[pos + 1 + i]!);
    name += name.length > 0 ? '.' + label : label;
    pos += 1 + len;
  }
  out.push(name);
  return after >= 0 ? after : pos;
}

/**
 * Reads the names filling [off, off + len). `padded` allows trailing zero bytes (NDP DNSSL pads the
 * option to 8 bytes). Returns null when malformed.
 */
export function decodeDnsNameList(buf: Uint8Array, off: number, len: number, compressed: boolean, padded: boolean): string[] | null {
  const out: string[] = [];
  const end = off + len;
  let pos = off;
  while (pos < end) {
    if (padded && buf[pos] === 0) {
      for (let i = pos; i < end; i++) if (buf[i] !== 0) return null;
      break;
    }
    pos = decodeDnsName(buf, pos, end, compressed ? off : -1, out);
    if (pos < 0) return null;
  }
  return out;
}
