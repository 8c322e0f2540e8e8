// A throwaway PostgreSQL 15 server (Debian's `postgresql` package) for tests, the bench and the demo:
// initdb into a temp dir as the `postgres` user (it refuses root), TLS with client certificates
// (a test CA, a server certificate with the listen address as IP SAN, one client certificate per
// role with CN = role name; pg_hba `hostssl … scram-sha-256 clientcert=verify-full`, so a client
// needs both its password and its certificate), optionally inside a network namespace. `stop()` kills
// it and removes the directory; the same happens on process exit or SIGINT/SIGTERM.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, run } from './testhosts.js';

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';

export interface PostgresHostOptions {
  /** Network namespace to run in (created by the caller); default: the current one. */
  netns?: string;
  /** Listen address (IPv4 or IPv6, no brackets); default 127.0.0.1. */
  address?: string;
  /** TCP port; default: a free one on loopback, 5432 inside a namespace. */
  port?: number;
  /** Database created for the roles; default `cbr`. */
  database?: string;
  /** Roles (login, password = `<role>-password`, a client certificate each); default `['cbr']`. */
  roles?: string[];
}

export interface ClientTls {
  caFile: string;
  certFile: string;
  keyFile: string;
}

const live = new Set<PostgresHost>();
let hooksInstalled = false;
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', () => {
    for (const h of live) h.destroySync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const h of live) h.destroySync();
      process.kill(process.pid, sig);
    });
  }
}

export class PostgresHost {
  readonly dataDir: string;
  readonly socketDir: string;
  readonly caFile: string;
  private readonly pgUid: number;
  private readonly pgGid: number;
  private removed = false;

  private constructor(
    readonly dir: string,
    readonly address: string,
    readonly port: number,
    readonly database: string,
    readonly roles: readonly string[],
    readonly netns: string | undefined,
  ) {
    this.dataDir = join(dir, 'data');
    this.socketDir = dir;
    this.caFile = join(dir, 'tls', 'ca.crt');
    this.pgUid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    this.pgGid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
  }

  /** Creates, configures and starts a server; on any failure everything created is removed. */
  static async start(opts: PostgresHostOptions = {}): Promise<PostgresHost> {
    if (!existsSync(join(POSTGRES_BIN, 'initdb'))) {
      throw new Error(`${POSTGRES_BIN}/initdb is missing: install the Debian package postgresql (scripts/install-deps.sh)`);
    }
    installExitHooks();
    const address = opts.address ?? '127.0.0.1';
    const port = opts.port ?? (opts.netns ? 5432 : await freePort(address));
    const dir = mkdtempSync(join(tmpdir(), 'cbr-pg-'));
    const host = new PostgresHost(dir, address, port, opts.database ?? 'cbr', opts.roles ?? ['cbr'], opts.netns);
    live.add(host);
    try {
      await host.init();
      await host.startServer();
      await host.createRoles();
      return host;
    } catch (err) {
      await host.stop();
      throw err;
    }
  }

  /**
   * A streaming replica of `primary` (pg_basebackup -R), on the same address and another port, with
   * the same TLS material, roles and database: a hot standby until `promote()`.
   */
  static async startReplica(primary: PostgresHost): Promise<PostgresHost> {
    if (primary.netns) throw new Error('replicas of a PostgreSQL host inside a namespace are not supported');
    const dir = mkdtempSync(join(tmpdir(), 'cbr-pg-'));
    const host = new PostgresHost(dir, primary.address, await freePort(primary.address), primary.database, primary.roles, undefined);
    live.add(host);
    try {
      chownSync(dir, host.pgUid, host.pgGid);
      chmodSync(dir, 0o700);
      await run(['cp', '-a', join(primary.dir, 'tls'), join(dir, 'tls')]);
      await run(
        host.asPostgres([
          join(POSTGRES_BIN, 'pg_basebackup'),
          '-h',
          primary.socketDir,
          '-p',
          String(primary.port),
          '-U',
          'postgres',
          '-D',
          host.dataDir,
          '-R',
          '-X',
          'stream',
          '-c',
          'fast',
          '--no-sync',
        ]),
        { timeoutMs: 120_000 },
      );
      await host.startServer();
      return host;
    } catch (err) {
      await host.stop();
      throw err;
    }
  }

  /** Promotes a replica to primary (`pg_ctl promote`), waiting until it accepts writes. */
  async promote(): Promise<void> {
    await this.pgCtl(['promote', '-w', '-t', '60']);
  }

  /** Password of a role (also written to `passwordFile(role)`). */
  password(role: string): string {
    return `${role}-password`;
  }

  passwordFile(role: string): string {
    return join(this.dir, 'tls', `${role}.password`);
  }

  /** CA, client certificate and key files for a role (readable by root only). */
  clientTls(role: string): ClientTls {
    return { caFile: this.caFile, certFile: join(this.dir, 'tls', `${role}.crt`), keyFile: join(this.dir, 'tls', `${role}.key`) };
  }

  /** `postgres://role@address:port/db?sslmode=verify-full&…` with the role's certificate files. */
  url(role = this.roles[0]!): string {
    const tls = this.clientTls(role);
    const hostPart = this.address.includes(':') ? `[${this.address}]` : this.address;
    const q = new URLSearchParams({ sslmode: 'verify-full', sslrootcert: tls.caFile, sslcert: tls.certFile, sslkey: tls.keyFile });
    return `postgres://${role}@${hostPart}:${this.port}/${this.database}?${q}`;
  }

  /** PID of the postmaster, from its pid file; undefined when not running. */
  postmasterPid(): number | undefined {
    try {
      const pid = Number(readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return processRunning(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Kills the postmaster and all its children with SIGKILL (a crash); the data stay for `resume()`. */
  async kill9(): Promise<void> {
    const pid = this.postmasterPid();
    if (pid === undefined) return;
    const pids = killTree(pid);
    for (let i = 0; i < 100 && pids.some(processRunning); i++) await new Promise((r) => setTimeout(r, 20));
  }

  /** Stops the server cleanly (`pg_ctl stop -m fast`), keeping the data for `resume()`. */
  async halt(): Promise<void> {
    if (this.postmasterPid() === undefined) return;
    await this.pgCtl(['stop', '-m', 'fast', '-w', '-t', '20']);
  }

  /** Starts the server again on the same data directory (after `halt()` or `kill9()`). */
  async resume(): Promise<void> {
    if (this.postmasterPid() === undefined) {
      // A killed postmaster may linger as a zombie (this machine's init reaps late); PostgreSQL
      // would take its lock files for a running server.
      rmSync(join(this.dataDir, 'postmaster.pid'), { force: true });
      rmSync(join(this.socketDir, `.s.PGSQL.${this.port}.lock`), { force: true });
    }
    await this.startServer();
  }

  /** Kills the server and removes its directory; safe to call twice. */
  async stop(): Promise<void> {
    if (this.removed) return;
    const pid = this.postmasterPid();
    if (pid !== undefined) {
      await this.pgCtl(['stop', '-m', 'immediate', '-w', '-t', '10']).catch(() => killTree(pid));
    }
    this.destroySync();
  }

  /** Synchronous teardown for process exit: SIGKILL to the cluster, then remove the directory. */
  destroySync(): void {
    if (this.removed) return;
    this.removed = true;
    live.delete(this);
    const pid = this.postmasterPid();
    if (pid !== undefined) killTree(pid);
    rmSync(this.dir, { recursive: true, force: true });
  }

  private asPostgres(argv: string[]): string[] {
    const inner = ['runuser', '-u', 'postgres', '--', ...argv];
    return this.netns ? ['ip', 'netns', 'exec', this.netns, ...inner] : inner;
  }

  private pgCtl(args: string[]): Promise<string> {
    return run(this.asPostgres([join(POSTGRES_BIN, 'pg_ctl'), '-D', this.dataDir, ...args]), { timeoutMs: 60_000 });
  }

  private async init(): Promise<void> {
    chownSync(this.dir, this.pgUid, this.pgGid);
    chmodSync(this.dir, 0o700);
    const tls = join(this.dir, 'tls');
    await run(['mkdir', '-m', '0755', tls]);
    await this.makeCertificates(tls);
    await run(
      this.asPostgres([
        join(POSTGRES_BIN, 'initdb'),
        '-D',
        this.dataDir,
        '-U',
        'postgres',
        '-E',
        'UTF8',
        '--no-sync',
        '--auth-local=peer',
        '--auth-host=reject',
      ]),
      {
        timeoutMs: 120_000,
      },
    );
    writeFileSync(
      join(this.dataDir, 'pg_hba.conf'),
      [
        'local all postgres peer',
        'local replication postgres peer',
        'hostssl all all 0.0.0.0/0 scram-sha-256 clientcert=verify-full',
        'hostssl all all ::/0 scram-sha-256 clientcert=verify-full',
        '',
      ].join('\n'),
    );
    chownSync(join(this.dataDir, 'pg_hba.conf'), this.pgUid, this.pgGid);
  }

  private async makeCertificates(tls: string): Promise<void> {
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    const f = (name: string) => join(tls, name);
    await run(['openssl', 'req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=cbr test postgres CA']);
    const sign = async (name: string, cn: string, ext: string) => {
      await run(['openssl', 'req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}`]);
      writeFileSync(f(`${name}.ext`), ext);
      await run([
        'openssl',
        'x509',
        '-req',
        '-in',
        f(`${name}.csr`),
        '-CA',
        f('ca.crt'),
        '-CAkey',
        f('ca.key'),
        '-CAcreateserial',
        '-days',
        '2',
        '-out',
        f(`${name}.crt`),
        '-extfile',
        f(`${name}.ext`),
      ]);
      chmodSync(f(`${name}.key`), 0o600);
    };
    await sign(
      'server',
      this.address,
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${this.address}\n`,
    );
    chownSync(f('server.key'), this.pgUid, this.pgGid);
    for (const role of this.roles) {
      await sign(role, role, 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n');
      writeFileSync(this.passwordFile(role), `${this.password(role)}\n`, { mode: 0o600 });
    }
  }

  private async startServer(): Promise<void> {
    const tls = join(this.dir, 'tls');
    const settings = [
      `-k ${this.socketDir}`,
      `-p ${this.port}`,
      `-c listen_addresses=${this.address}`,
      '-c ssl=on',
      `-c ssl_cert_file=${join(tls, 'server.crt')}`,
      `-c ssl_key_file=${join(tls, 'server.key')}`,
      `-c ssl_ca_file=${join(tls, 'ca.crt')}`,
      '-c max_connections=200',
    ].join(' ');
    await this.pgCtl(['start', '-w', '-t', '60', '-l', join(this.dir, 'postgres.log'), '-o', settings]);
  }

  /** Runs SQL as the superuser over the Unix socket (in the namespace if any). */
  async psql(sql: string, database = 'postgres'): Promise<string> {
    return run(
      this.asPostgres([join(POSTGRES_BIN, 'psql'), '-h', this.socketDir, '-p', String(this.port), '-d', database, '-v', 'ON_ERROR_STOP=1', '-qAt', '-c', sql]),
    );
  }

  private async createRoles(): Promise<void> {
    for (const role of this.roles) {
      await this.psql(`CREATE ROLE "${role}" LOGIN PASSWORD '${this.password(role)}'`);
    }
    await this.psql(`CREATE DATABASE "${this.database}" OWNER "${this.roles[0]}"`);
  }
}

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return []; // pgrep exits 1 when there are none
  }
}

/** SIGKILL to a process and its children (the postmaster's backends and workers); returns their pids. */
function killTree(pid: number): number[] {
  const pids = [pid, ...childrenOf(pid)];
  for (const p of pids) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  return pids;
}

/** True while a process runs; a zombie counts as gone (this machine's init reaps late). */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
