// Reads the classic little-endian pcap files vunet's --pcap writes (src/main/pcap.ts), for tests.
import { readFileSync } from 'node:fs';

/** The frames of the capture at `path`, in order. */
export function readPcap(path: string): Uint8Array[] {
  const b = readFileSync(path);
  if (b.length < 24 || b.readUInt32LE(0) !== 0xa1b2c3d4) throw new Error(`${path}: not a little-endian pcap file`);
  const frames: Uint8Array[] = [];
  for (let at = 24; at + 16 <= b.length;) {
    const incl = b.readUInt32LE(at + 8);
    frames.push(new Uint8Array(b.subarray(at + 16, at + 16 + incl)));
    at += 16 + incl;
  }
  return frames;
}
