// Persistence of the prefixes added to the deny/allow lists through the API (agent.stateDir/xdp-lists.json),
// so they survive restarts; the config's own prefixes are never written here.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ListKind, ListState } from './control.js';
import { parsePrefix } from '../dataplane/index.js';

export const LIST_STATE_FILE = 'xdp-lists.json';

export function emptyListState(): ListState {
  return { api: { deny: [], allow: [] } };
}

export function loadListState(stateDir: string): ListState {
  const path = join(stateDir, LIST_STATE_FILE);
  if (!existsSync(path)) return emptyListState();
  const raw = JSON.parse(readFileSync(path, 'utf8')) as { api?: Partial<Record<ListKind, string[]>> };
  return { api: { deny: (raw.api?.deny ?? []).map((t) => parsePrefix(t).text), allow: (raw.api?.allow ?? []).map((t) => parsePrefix(t).text) } };
}

/** Written to a temp file and renamed, so a crash leaves the old or the new state, never half. */
export function saveListState(stateDir: string, s: ListState): void {
  const path = join(stateDir, LIST_STATE_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}
