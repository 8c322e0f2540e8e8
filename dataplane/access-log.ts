// The access log: one info line when a tunnel session (a MASQUE CONNECT, a WireGuard registration)
// starts and one when it ends, so an operator can answer "who was connected, from where, to what,
// for how long". The format lives here only; tunnel/ calls it at its session hooks. Bearer tokens are
// never passed in, so they cannot be logged.

export type AccessKind = 'masque-connect-udp' | 'masque-connect-ip' | 'wireguard';

/**
 * Why a session ended: `fin` the client closed its stream, `reset` a stream reset or protocol error,
 * `token-expired` its token ran out, `revoked` an operator removed it, `deleted` its subject removed
 * it, `expired` the lease's lifetime ran out, `idle` the QUIC idle timeout, `closed` the QUIC
 * connection was closed, `drain` the server shut down.
 */
export type AccessEndReason = 'fin' | 'reset' | 'token-expired' | 'revoked' | 'deleted' | 'expired' | 'idle' | 'closed' | 'drain';

export interface AccessFields {
  kind: AccessKind;
  subject: string;
  org?: string;
  /** The client's address (host:port of the QUIC peer, the registration request's source). */
  client?: string;
  /** connect-udp: the target host:port. */
  target?: string;
  /** connect-ip and WireGuard: the addresses leased to the client. */
  lease?: string[];
}

interface InfoLog {
  info(obj: object, msg?: string): void;
}

/** One session's access record; count bytes on it, then end() it once (later calls do nothing). */
export class AccessSession {
  /** Payload bytes from the client into the tunnel, and out of the tunnel to the client. */
  fromClient = 0;
  toClient = 0;
  private ended = false;

  constructor(
    private readonly log: InfoLog,
    readonly fields: AccessFields,
    readonly startedAt: number,
  ) {}

  end(reason: AccessEndReason, traffic?: { fromClient: number; toClient: number }): void {
    if (this.ended) return;
    this.ended = true;
    if (traffic) {
      this.fromClient = traffic.fromClient;
      this.toClient = traffic.toClient;
    }
    this.log.info(
      {
        access: 'end',
        ...this.fields,
        reason,
        bytesFromClient: this.fromClient,
        bytesToClient: this.toClient,
        durationMs: Math.max(0, Date.now() - this.startedAt),
      },
      `access: ${this.fields.kind} ended (${reason})`,
    );
  }
}

export class AccessLog {
  private readonly log: InfoLog;

  /** `log` is the subsystem's logger; the lines carry `access: start|end` to filter on. */
  constructor(log: InfoLog & { child?(bindings: object): InfoLog }) {
    this.log = log.child ? log.child({ log: 'access' }) : log;
  }

  /** Logs the start line and returns the record to end later. */
  start(fields: AccessFields): AccessSession {
    this.log.info({ access: 'start', ...fields }, `access: ${fields.kind} started`);
    return new AccessSession(this.log, fields, Date.now());
  }

  /** A session that started before this process did (its start line is in an earlier log). */
  resume(fields: AccessFields, startedAt: number): AccessSession {
    return new AccessSession(this.log, fields, startedAt);
  }
}
