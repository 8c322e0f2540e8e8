// The life of a MASQUE session, apart from HTTP/3 routing and auth (server.ts): set-up counted against
// its subject, open (live gauge, token expiry on the table's one ExpiryWheel), refresh (a new token moves the expiry), end (its
// relay or address lease released, counted by reason). What an end does to the stream (FIN, reset) is
// the server's, through onEnd.
import type { Identity } from '../../auth/index.js';
import type { AccessEndReason, AccessSession } from '../../dataplane/index.js';
import type { CapsuleParser } from '../h3/index.js';
import type { UdpRelay } from './udp-relay.js';
import type { IpLease, IpSessionSink } from './ip-gateway.js';
import { ExpiryWheel } from './expiry-wheel.js';

export type MasqueKind = 'udp' | 'ip';
export type SessionEndReason = 'client' | 'reset' | 'token-expired' | 'connection' | 'server' | 'limit';

export interface Session<C> {
  kind: MasqueKind;
  streamId: number;
  conn: C;
  identity: Identity;
  capsules: CapsuleParser;
  /** The HTTP Datagram prefix (quarter stream ID, context 0) of this session. */
  prefix: Buffer;
  relay?: UdpRelay;
  lease?: IpLease;
  sink?: IpSessionSink;
  ipproto?: number;
  /** Counted in `live` (set once the 200 went out). */
  opened: boolean;
  ended: boolean;
  /** The access-log record (bytes each way), from the 200 answer on. */
  access?: AccessSession;
  /** What the access log says ended it, when the server knows more than the end reason (a FIN). */
  endDetail?: AccessEndReason;
  /** connect-ip: the ADDRESS_REQUEST answer budget (limits.addressRequestsPerSecond). */
  addressRequests?: { tokens: number; at: number };
}

export interface SessionTableHooks<C> {
  /** An opened session ended: its stream gets what `why` asks for. */
  onEnd(s: Session<C>, why: SessionEndReason): void;
  log?: { info(o: object, m?: string): void };
}

export class SessionTable<C> {
  readonly live: Record<MasqueKind, number> = { udp: 0, ip: 0 };
  readonly opened: Record<MasqueKind, number> = { udp: 0, ip: 0 };
  readonly ended: Record<SessionEndReason, number> = { client: 0, reset: 0, 'token-expired': 0, connection: 0, server: 0, limit: 0 };
  /** Sessions open or being set up, per subject and kind (for the per-subject caps). */
  private readonly perSubject = new Map<string, Record<MasqueKind, number>>();
  /** Token expiries of the open sessions: one timer for all of them. */
  private readonly expiries = new ExpiryWheel<Session<C>>((s) => {
    this.hooks.log?.info({ subject: s.identity.subject, kind: s.kind }, 'masque session ended: token expired');
    this.end(s, 'token-expired');
  });

  constructor(private readonly hooks: SessionTableHooks<C>) {}

  /** Open sessions waiting for their token expiry. */
  get expiring(): number {
    return this.expiries.size;
  }

  /** Sessions of this kind the subject holds (open or being set up). */
  held(subject: string, kind: MasqueKind): number {
    return this.perSubject.get(subject)?.[kind] ?? 0;
  }

  /** A session being set up: counted against its subject from now, so concurrent CONNECTs cannot pass a cap together. */
  begin(conn: C, streamId: number, kind: MasqueKind, identity: Identity, capsules: CapsuleParser, prefix: Buffer): Session<C> {
    this.count(identity.subject, kind, 1);
    return { kind, streamId, conn, identity, capsules, prefix, opened: false, ended: false };
  }

  /** The 200 went out: the session is live until its token expires or it ends. */
  open(s: Session<C>): void {
    s.opened = true;
    this.live[s.kind]++;
    this.opened[s.kind]++;
    this.expiries.schedule(s, s.identity.expiresAt * 1000);
  }

  /** A fresh token of the same subject: the session runs until its expiry. */
  refresh(s: Session<C>, identity: Identity): void {
    s.identity = identity;
    if (s.opened && !s.ended) this.expiries.schedule(s, identity.expiresAt * 1000);
  }

  /** Releases what the session holds; an opened one is counted by `why` and handed to onEnd. */
  end(s: Session<C>, why: SessionEndReason): void {
    if (s.ended) return;
    s.ended = true;
    this.expiries.cancel(s);
    s.relay?.close();
    s.lease?.release();
    this.count(s.identity.subject, s.kind, -1);
    if (!s.opened) return; // set up but never answered with 200: nothing was counted or sent
    this.live[s.kind]--;
    this.ended[why]++;
    this.hooks.onEnd(s, why);
  }

  private count(subject: string, kind: MasqueKind, delta: 1 | -1): void {
    const n = this.perSubject.get(subject) ?? { udp: 0, ip: 0 };
    n[kind] += delta;
    if (n.udp === 0 && n.ip === 0) this.perSubject.delete(subject);
    else this.perSubject.set(subject, n);
  }
}
