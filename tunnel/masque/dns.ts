// Host-name targets of connect-udp resolve through c-ares (node:dns Resolver), not getaddrinfo: a slow
// DNS server then holds a socket, not one of libuv's four pool threads that JWKS and introspection also
// need. Each lookup has a deadline (c-ares' own timeout, one try, and a timer that cancels it) and at
// most maxInFlight run at once; more are refused at once (503).
import { Resolver } from 'node:dns/promises';
import { TargetError } from './policy.js';

export interface TargetResolverOptions {
  timeoutMs: number;
  maxInFlight: number;
  /** DNS servers ("ip" or "ip:port"); default: the system's (resolv.conf). */
  servers?: string[];
}

export type DnsResult = 'ok' | 'not-found' | 'timeout' | 'busy' | 'error';

export class TargetResolver {
  readonly results: Record<DnsResult, number> = { ok: 0, 'not-found': 0, timeout: 0, busy: 0, error: 0 };
  private inFlightCount = 0;

  constructor(readonly opts: TargetResolverOptions) {}

  get inFlight(): number {
    return this.inFlightCount;
  }

  /** The first IPv4 address of `host`, else its first IPv6 address. Throws TargetError (502, 503, 504). */
  async resolve(host: string): Promise<string> {
    if (this.inFlightCount >= this.opts.maxInFlight) {
      this.results.busy++;
      throw new TargetError('UNAVAILABLE', `cannot resolve ${host} now: ${this.opts.maxInFlight} DNS lookups are in flight`);
    }
    this.inFlightCount++;
    // One Resolver per lookup, so cancel() at the deadline ends this lookup and no other.
    const resolver = new Resolver({ timeout: this.opts.timeoutMs, tries: 1 });
    if (this.opts.servers) resolver.setServers(this.opts.servers);
    const timer = setTimeout(() => resolver.cancel(), this.opts.timeoutMs);
    try {
      const address = await first(resolver, host);
      this.results.ok++;
      return address;
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ECANCELLED' || code === 'ETIMEOUT') {
        this.results.timeout++;
        throw new TargetError('TIMEOUT', `cannot resolve ${host}: no answer within ${this.opts.timeoutMs} ms`, { cause: err });
      }
      if (code === 'ENOTFOUND' || code === 'ENODATA') {
        this.results['not-found']++;
        throw new TargetError('TARGET_UNRESOLVABLE', `cannot resolve ${host}: no such name`, { cause: err });
      }
      this.results.error++;
      throw new TargetError('DNS_FAILED', `cannot resolve ${host}: ${typeof code === 'string' ? code : 'DNS error'}`, { cause: err });
    } finally {
      clearTimeout(timer);
      this.inFlightCount--;
    }
  }
}

async function first(resolver: Resolver, host: string): Promise<string> {
  try {
    const v4 = await resolver.resolve4(host);
    if (v4[0] !== undefined) return v4[0];
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code !== 'ENODATA' && code !== 'ENOTFOUND') throw err;
  }
  const v6 = await resolver.resolve6(host);
  if (v6[0] === undefined) throw Object.assign(new Error(`no address for ${host}`), { code: 'ENODATA' });
  return v6[0];
}
