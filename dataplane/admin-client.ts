// What CLI commands (`cbr xdp status`, `cbr wg peers`, `cbr bgp drain`, …) use to talk to the running
// agent's /v1/ API. The address comes from --admin, CBR_ADMIN_URL, or the config file's admin.listen.
import type { Command } from 'commander';
import { ConfigLoader } from './config/load.js';
import { baseConfigSchema } from './config/base.js';
import { readSecretFile } from './os/secret-file.js';
import { CbrError, codeForStatus, isErrorCode } from './errors.js';

export interface AdminClientOptions {
  /** Base URL such as http://127.0.0.1:9780 */
  url: string;
  token?: string;
  timeoutMs?: number;
}

/**
 * A failed admin request: no answer (ADMIN_REQUEST_FAILED), or the agent's error status with the
 * code its body names (else the status's generic code).
 */
export class AdminClientError extends CbrError {
  constructor(
    message: string,
    readonly status?: number,
    readonly body?: unknown,
  ) {
    const named = (body as { code?: unknown } | undefined)?.code;
    super(status === undefined ? 'ADMIN_REQUEST_FAILED' : isErrorCode(named) ? named : codeForStatus(status), message);
  }
}

export function adminClient(opts: AdminClientOptions) {
  const request = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(new URL(path, opts.url), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new AdminClientError(`cannot reach the agent at ${opts.url} (${cause}); is it running? (--admin URL or CBR_ADMIN_URL)`);
    }
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* not JSON */
    }
    if (!res.ok) {
      const msg = typeof parsed === 'object' && parsed && 'error' in parsed ? String((parsed as { error: unknown }).error) : text.trim();
      throw new AdminClientError(`agent answered ${res.status}: ${msg}`, res.status, parsed);
    }
    return parsed;
  };
  return {
    get: (path: string) => request('GET', path),
    post: (path: string, body?: unknown) => request('POST', path, body ?? {}),
    delete: (path: string) => request('DELETE', path),
  };
}

export type AdminClient = ReturnType<typeof adminClient>;

/** Adds --admin and --config to a command that talks to the agent. */
export function withAdminOptions(cmd: Command): Command {
  return cmd
    .option('--admin <url>', 'agent admin URL (default: CBR_ADMIN_URL, else admin.listen from --config, else http://127.0.0.1:9780)')
    .option('--config <file>', 'agent config file to read admin.listen and the API token from (default: CBR_CONFIG)');
}

/** Resolves the admin URL and token from the options a command got. */
export function adminClientFromOptions(opts: { admin?: string; config?: string }) {
  let url = opts.admin ?? process.env.CBR_ADMIN_URL;
  let token = process.env.CBR_ADMIN_TOKEN;
  const configPath = opts.config ?? process.env.CBR_CONFIG;
  if (configPath && (!url || !token)) {
    // Only the base sections matter here; the agent validates the rest.
    const { config } = new ConfigLoader(baseConfigSchema).loadFile(configPath);
    url ??= `http://${config.admin.listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:')}`;
    token ??= config.admin.apiToken ?? (config.admin.apiTokenFile ? readSecretFile(config.admin.apiTokenFile, 'admin.apiTokenFile').trim() : undefined);
  }
  return adminClient({ url: url ?? 'http://127.0.0.1:9780', token });
}
