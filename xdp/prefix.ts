// The deny/allow lists as the LPM trie keys of xdp/src/cbr_xdp.h (struct cbr_lpm4 / cbr_lpm6), and
// list files. Parsing and text forms are the shared codec's (dataplane/net/ip.ts).
import { PrefixError, errorMessage, formatIp, parsePrefix, type ParsedPrefix } from '../dataplane/index.js';

/** struct cbr_lpm4 / cbr_lpm6: __u32 prefixlen (host order), then the address bytes. */
export function lpmKey(p: ParsedPrefix): Buffer {
  const k = Buffer.alloc(4 + (p.family === 4 ? 4 : 16));
  k.writeUInt32LE(p.length, 0);
  p.addr.copy(k, 4);
  return k;
}

export function decodeLpmKey(k: Buffer): ParsedPrefix {
  if (k.length !== 8 && k.length !== 20) throw new PrefixError(`LPM key of ${k.length} bytes: expected 8 or 20`);
  const family = k.length === 8 ? 4 : 6;
  const length = k.readUInt32LE(0);
  if (length > (family === 4 ? 32 : 128)) throw new PrefixError(`LPM key prefix length ${length} is too long for IPv${family}`);
  const addr = Buffer.from(k.subarray(4));
  return { family, addr, length, text: `${formatIp(addr)}/${length}` };
}

/** Reads a list file: one prefix a line; `#` comments and blank lines ignored. Errors name file and line. */
export function parsePrefixList(text: string, source: string): ParsedPrefix[] {
  const out: ParsedPrefix[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, '').trim();
    if (!line) continue;
    try {
      out.push(parsePrefix(line));
    } catch (err) {
      throw new PrefixError(`${source}:${i + 1}: ${errorMessage(err)}`, { cause: err });
    }
  }
  return out;
}
