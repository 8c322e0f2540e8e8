// Test helper: a headless Debian `chromium` driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages separated by NUL, commands on fd 3, replies on fd 4), so a
// test can load a page, let its scripts run in real time, read the DOM and take a screenshot.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

export interface Browser {
  /** Opens `url` in a new tab and resolves once it has loaded. */
  open(url: string, timeoutMs?: number): Promise<void>;
  /** Evaluates an expression in the page and returns its (JSON) value. */
  evaluate<T>(expression: string): Promise<T>;
  /** A PNG of the viewport. */
  screenshot(): Promise<Buffer>;
  close(): Promise<void>;
}

/**
 * Starts chromium; `wrap` prefixes the command (e.g. `ip netns exec <ns>`) to run it where the page is.
 * Every call is bounded by `timeoutMs`.
 */
export async function launchChromium(opts: { wrap?: string[]; width?: number; height?: number; timeoutMs?: number } = {}): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'cbr-chromium-'));
  const args = [
    'chromium',
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-extensions',
    '--remote-debugging-pipe',
    `--user-data-dir=${profile}`,
    `--window-size=${opts.width ?? 1280},${opts.height ?? 900}`,
    'about:blank',
  ];
  const argv = [...(opts.wrap ?? []), ...args];
  const spawnOpts: SpawnOptions = { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] };
  const proc: ChildProcess = spawn(argv[0]!, argv.slice(1), spawnOpts);
  let stderr = '';
  proc.stderr?.on('data', (d) => {
    if (stderr.length < 20_000) stderr += d;
  });
  const toBrowser = proc.stdio[3] as Writable;
  const fromBrowser = proc.stdio[4] as Readable;
  const timeoutMs = opts.timeoutMs ?? 20_000;
  let nextId = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  const eventWaiters: Array<{ method: string; resolve: () => void }> = [];
  let buf = Buffer.alloc(0);
  fromBrowser.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (let i = buf.indexOf(0); i >= 0; i = buf.indexOf(0)) {
      const msg = JSON.parse(buf.subarray(0, i).toString('utf8')) as {
        id?: number;
        result?: unknown;
        error?: { message: string };
        method?: string;
        sessionId?: string;
        params?: unknown;
      };
      buf = buf.subarray(i + 1);
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`chromium: ${msg.error.message}`));
        else p?.resolve(msg.result);
      } else if (msg.method) {
        for (const w of eventWaiters.filter((x) => x.method === msg.method)) {
          eventWaiters.splice(eventWaiters.indexOf(w), 1);
          w.resolve();
        }
      }
    }
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`chromium exited:\n${stderr.slice(-2000)}`));
    pending.clear();
  });
  const send = <T>(method: string, params: unknown = {}, sessionId?: string): Promise<T> => {
    const id = nextId++;
    toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`chromium: ${method} got no answer within ${timeoutMs} ms\n${stderr.slice(-2000)}`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (v) => {
          clearTimeout(t);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  };
  const waitEvent = (method: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const w = { method, resolve };
      eventWaiters.push(w);
      setTimeout(() => {
        const i = eventWaiters.indexOf(w);
        if (i >= 0) {
          eventWaiters.splice(i, 1);
          reject(new Error(`chromium: no ${method} within ${timeoutMs} ms`));
        }
      }, timeoutMs);
    });
  let session: string | undefined;
  const close = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      const killer = setTimeout(() => proc.kill('SIGKILL'), 3_000);
      await exited;
      clearTimeout(killer);
    }
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    await send('Browser.getVersion');
  } catch (err) {
    await close();
    throw err;
  }
  return {
    async open(url) {
      const { targetId } = await send<{ targetId: string }>('Target.createTarget', { url: 'about:blank' });
      ({ sessionId: session } = await send<{ sessionId: string }>('Target.attachToTarget', { targetId, flatten: true }));
      await send('Page.enable', {}, session);
      const loaded = waitEvent('Page.loadEventFired');
      const nav = await send<{ errorText?: string }>('Page.navigate', { url }, session);
      if (nav.errorText) throw new Error(`chromium: cannot open ${url}: ${nav.errorText}`);
      await loaded;
    },
    async evaluate<T>(expression: string) {
      if (!session) throw new Error('chromium: open a page first');
      const r = await send<{ result: { value?: unknown }; exceptionDetails?: { text: string } }>(
        'Runtime.evaluate',
        { expression, returnByValue: true, awaitPromise: true },
        session,
      );
      if (r.exceptionDetails) throw new Error(`chromium: ${expression}: ${r.exceptionDetails.text}`);
      return r.result.value as T;
    },
    async screenshot() {
      if (!session) throw new Error('chromium: open a page first');
      const r = await send<{ data: string }>('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }, session);
      return Buffer.from(r.data, 'base64');
    },
    close,
  };
}
