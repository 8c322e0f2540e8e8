// BIRD's config file on disk: the peers' passwords read for rendering, `bird -p` to check a file, and
// atomic writes.
import { execFile } from 'node:child_process';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { errorMessage } from '../dataplane/index.js';
import type { BgpConfig } from './config.js';
import type { Logger } from '../dataplane/index.js';

const execFileAsync = promisify(execFile);

/** Reads each peer's password file: first line, trimmed; errors name the field. */
export function readPasswords(c: BgpConfig): Record<string, string> {
  const out: Record<string, string> = {};
  c.peers.forEach((p, i) => {
    if (!p.passwordFile) return;
    let text: string;
    try {
      text = readFileSync(p.passwordFile, 'utf8');
    } catch (err) {
      throw new Error(`bgp.peers[${i}].passwordFile: cannot read ${p.passwordFile}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`);
    }
    const pw = text.split('\n')[0]!.trim();
    if (pw.length === 0) throw new Error(`bgp.peers[${i}].passwordFile: ${p.passwordFile} is empty`);
    if (/["\\]/.test(pw)) throw new Error(`bgp.peers[${i}].passwordFile: the password may not contain " or \\`);
    if (pw.length > 80) throw new Error(`bgp.peers[${i}].passwordFile: TCP-MD5 passwords are at most 80 characters`);
    out[p.name] = pw;
  });
  return out;
}

/** Runs `bird -p -c FILE`; throws with BIRD's message when it refuses the file. */
export async function checkBirdConfig(binary: string, file: string): Promise<void> {
  try {
    await execFileAsync(binary, ['-p', '-c', file], { timeout: 10_000 });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new Error(`bgp.bird.binary: cannot run ${binary}: not found`);
    const msg = (e.stderr ?? e.message).trim().split('\n').filter(Boolean).pop() ?? e.message;
    throw new Error(`bgp: BIRD refuses the rendered config: ${msg}`);
  }
}

export function writeFileAtomic(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, text, { mode: 0o600 });
  renameSync(tmp, path);
}

/** writeFileAtomic for a best-effort restore: a failure is logged, not thrown (the caller is already handling one). */
export function writeFileAtomicQuiet(path: string, text: string, log: Logger): void {
  try {
    writeFileAtomic(path, text);
  } catch (err) {
    log.error({ path, err: errorMessage(err) }, 'cannot restore the last good file');
  }
}
