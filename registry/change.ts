// The registry's records and the codec of its change log: one row per change, `(seq, at, kind,
// body)`, body being JSON. Pure: the stores write what encodeChange returns and hand what they read
// to decodeChange, which checks every field and answers a bad row with a CbrError naming it.
import { z } from 'zod';
import { CbrError } from '../dataplane/index.js';

/** A WireGuard peer registered in the fleet, with its address lease. Times are Unix milliseconds. */
export interface PeerRecord {
  publicKey: string;
  iface: string;
  subject: string;
  ipv4?: string;
  ipv6?: string;
  createdAt: number;
  expiresAt: number;
}

export type RemovalReason = 'deleted' | 'expired' | 'revoked';

/** What a change did; `seq` and `at` come from the log. */
export type ChangeBody =
  | { kind: 'peer.put'; peer: PeerRecord }
  | { kind: 'peer.delete'; publicKey: string; iface: string; reason: RemovalReason }
  | { kind: 'deny.add'; prefix: string; comment?: string }
  | { kind: 'deny.delete'; prefix: string };

export type Change = ChangeBody & { seq: number; at: number };
export type ChangeKind = ChangeBody['kind'];

/** A change row as stored: seq and at may come back as strings (PostgreSQL bigint). */
export interface ChangeRow {
  seq: number | string;
  at: number | string;
  kind: string;
  body: string;
}

const KEY_RE = /^[A-Za-z0-9+/]{43}=$/;
const millis = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().min(1).max(256);

const peerSchema = z.strictObject({
  publicKey: z.string().regex(KEY_RE, { error: 'expected a base64 WireGuard public key' }),
  iface: text,
  subject: text,
  ipv4: text.optional(),
  ipv6: text.optional(),
  createdAt: millis,
  expiresAt: millis,
});

const bodySchemas = {
  'peer.put': z.strictObject({ peer: peerSchema }),
  'peer.delete': z.strictObject({
    publicKey: peerSchema.shape.publicKey,
    iface: text,
    reason: z.enum(['deleted', 'expired', 'revoked']),
  }),
  'deny.add': z.strictObject({ prefix: text, comment: z.string().max(256).optional() }),
  'deny.delete': z.strictObject({ prefix: text }),
} as const;

export const CHANGE_KINDS = Object.keys(bodySchemas) as ChangeKind[];

/** The stored form of a change: its kind and JSON body (a Change's seq and at are columns of their own). */
export function encodeChange(change: ChangeBody | Change): { kind: ChangeKind; body: string } {
  const { kind, ...rest } = change as ChangeBody & { seq?: number; at?: number };
  delete rest.seq;
  delete rest.at;
  return { kind, body: JSON.stringify(rest) };
}

function integer(v: number | string, field: string): number {
  const n = typeof v === 'number' ? v : /^\d{1,16}$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new CbrError('INVALID_ARGUMENT', `change row: ${field} is not a non-negative integer: ${JSON.stringify(v)}`);
  return n;
}

/** A change from its stored row; throws CbrError INVALID_ARGUMENT naming what is wrong. */
export function decodeChange(row: ChangeRow): Change {
  const seq = integer(row.seq, 'seq');
  const at = integer(row.at, 'at');
  const schema = (bodySchemas as Record<string, z.ZodType>)[row.kind];
  if (schema === undefined) throw new CbrError('INVALID_ARGUMENT', `change ${seq}: unknown kind ${JSON.stringify(row.kind)}`);
  let json: unknown;
  try {
    json = JSON.parse(row.body);
  } catch (err) {
    throw new CbrError('INVALID_ARGUMENT', `change ${seq}: body is not JSON`, { cause: err });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CbrError('INVALID_ARGUMENT', `change ${seq} (${row.kind}): ${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'invalid body'}`);
  }
  return { seq, at, kind: row.kind, ...(parsed.data as object) } as Change;
}
