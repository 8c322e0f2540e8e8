// Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights: each backend walks its own
// permutation of the table's slots and claims the next free one on its turn; a backend of weight w
// gets w turns for every maxWeight the heaviest one gets, so slots follow weights. The table size is
// a prime so every (offset, skip) permutation covers all slots. Backends are identified by a stable
// key (not their position), so removing one leaves the others' preferences untouched.
import { createHash } from 'node:crypto';
import { CbrError } from '../dataplane/index.js';

export const DEFAULT_RING_SIZE = 65537;

export class MaglevError extends CbrError {
  constructor(message: string) {
    super('MAGLEV_INVALID', message);
  }
}

export interface MaglevBackend {
  /** Stable identity (e.g. the backend's address); the permutation derives from it. */
  key: string;
  weight: number;
  /** The value the table stores for this backend (its index in the backends map). */
  index: number;
}

export function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

function hashes(key: string): [number, number] {
  const d = createHash('sha256').update(key).digest();
  return [d.readUInt32BE(0), d.readUInt32BE(4)];
}

/** Builds the table: entry i is the index of the backend that owns slot i. No backends → all EMPTY. */
export const EMPTY_SLOT = 0xffffffff;
export function buildMaglevTable(backends: MaglevBackend[], size = DEFAULT_RING_SIZE): Uint32Array {
  if (!isPrime(size)) throw new MaglevError(`ring size ${size} is not a prime`);
  const table = new Uint32Array(size).fill(EMPTY_SLOT);
  const live = backends.filter((b) => b.weight > 0);
  if (live.length === 0) return table;
  const keys = new Set<string>();
  for (const b of live) {
    if (!Number.isInteger(b.weight) || b.weight < 0) throw new MaglevError(`backend ${b.key}: weight ${b.weight} is not a non-negative integer`);
    if (keys.has(b.key)) throw new MaglevError(`backend ${b.key} appears twice`);
    keys.add(b.key);
  }
  // Sort by key so the result does not depend on the order backends are listed in.
  const sorted = [...live].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const offset = new Array<number>(sorted.length);
  const skip = new Array<number>(sorted.length);
  const next = new Array<number>(sorted.length).fill(0);
  const credit = new Array<number>(sorted.length).fill(0);
  sorted.forEach((b, i) => {
    const [h1, h2] = hashes(b.key);
    offset[i] = h1 % size;
    skip[i] = (h2 % (size - 1)) + 1;
  });
  const maxWeight = Math.max(...sorted.map((b) => b.weight));
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < sorted.length && filled < size; i++) {
      credit[i] = credit[i]! + sorted[i]!.weight;
      while (credit[i]! >= maxWeight && filled < size) {
        credit[i] = credit[i]! - maxWeight;
        // next preferred slot that is still free
        let slot: number;
        do {
          slot = (offset[i]! + next[i]! * skip[i]!) % size;
          next[i]!++;
        } while (table[slot] !== EMPTY_SLOT);
        table[slot] = sorted[i]!.index;
        filled++;
      }
    }
  }
  return table;
}

/** Slots whose owner differs between two tables of the same size: the incremental update. */
export function diffTables(prev: Uint32Array | undefined, next: Uint32Array): number[] {
  if (!prev || prev.length !== next.length) return Array.from({ length: next.length }, (_, i) => i);
  const changed: number[] = [];
  for (let i = 0; i < next.length; i++) if (prev[i] !== next[i]) changed.push(i);
  return changed;
}
