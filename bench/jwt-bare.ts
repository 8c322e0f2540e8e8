// The floor an access-token check is compared with: node:crypto's signature verify over tokens split
// and base64url-decoded beforehand (no parsing, no claims, no async hop), and the one-at-a-time loop
// every auth figure is measured with. Used by bench/auth (the gate) and bench/masque (session setup).
import { createPublicKey, verify as cryptoVerify, type JsonWebKey } from 'node:crypto';

export interface Run {
  perSecond: number;
  p99us: number;
  p50us: number;
}

/** How long each figure's loop runs (QUICK=1: the short version). */
export const RUN_MS = process.env.QUICK === '1' ? 800 : 4000;

/** Calls `fn(i)` one at a time for `runMs` (at most 5 M calls) after 200 warm-up calls. */
export async function measure(fn: (i: number) => Promise<unknown> | unknown, runMs = RUN_MS): Promise<Run> {
  for (let i = 0; i < 200; i++) await fn(i); // warm-up: key import, JIT
  const lat: number[] = [];
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < runMs && n < 5_000_000) {
    const s = performance.now();
    await fn(n);
    lat.push(performance.now() - s);
    n++;
  }
  const elapsed = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))]! * 1000;
  return { perSecond: n / elapsed, p99us: q(0.99), p50us: q(0.5) };
}

/** A call that checks token `i % tokens.length`'s signature with the issuer's public JWK; throws when one fails. */
export function bareVerifier(alg: 'RS256' | 'ES256', jwk: JsonWebKey, tokens: string[]): (i: number) => void {
  const pub = createPublicKey({ key: jwk, format: 'jwk' });
  const key = alg === 'ES256' ? { key: pub, dsaEncoding: 'ieee-p1363' as const } : pub;
  const parts = tokens.map((t) => {
    const [h, p, s] = t.split('.');
    return { data: Buffer.from(`${h}.${p}`), sig: Buffer.from(s ?? '', 'base64url') };
  });
  return (i) => {
    const { data, sig } = parts[i % parts.length]!;
    if (!cryptoVerify('sha256', data, key, sig)) throw new Error('baseline signature check failed');
  };
}
