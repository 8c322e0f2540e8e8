// Reads a YAML config file, applies CBR_* environment overrides and validates it against a schema
// (the agent's full one, or the base sections for CLI commands). Every problem becomes one line
// `<field path>: <what was expected>`, so an operator can fix a file without reading code.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CbrError, errorMessage } from '../errors.js';
import { parseDocument, parse as parseYamlScalar, LineCounter } from 'yaml';

export class ConfigError extends CbrError {
  constructor(
    readonly problems: string[],
    readonly source: string,
  ) {
    super('CONFIG_INVALID', problems.join('\n'));
  }
}

/** The parts of a JSON Schema node the loader and the docs generator read. */
export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  default?: unknown;
  description?: string;
  enum?: unknown[];
  format?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  [k: string]: unknown;
};

/** Leaf paths of a JSON schema (objects are walked, arrays and scalars are leaves). */
function leafPathsOf(node: JsonSchema, prefix: string[] = []): string[][] {
  if (node.properties) {
    return Object.entries(node.properties).flatMap(([k, child]) => leafPathsOf(child, [...prefix, k]));
  }
  return prefix.length ? [prefix] : [];
}

/** `tunnel.masque.congestionControl` → `CBR_TUNNEL_MASQUE_CONGESTION_CONTROL`. */
export function envNameFor(path: readonly string[]): string {
  return (
    'CBR_' +
    path
      .map((p) =>
        p
          .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
          .replace(/-/g, '_')
          .toUpperCase(),
      )
      .join('_')
  );
}

/** Short aliases an operator expects; they win over the long names. */
const ENV_ALIASES: Record<string, string[]> = {
  CBR_LOG_LEVEL: ['log', 'level'],
  CBR_CC: ['tunnel', 'masque', 'congestionControl'],
};

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

function nearMiss(key: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function fmtPath(path: readonly PropertyKey[]): string {
  if (!path.length) return '(root)';
  // Keys that are not plain identifiers are quoted so the path stays readable and unambiguous.
  const seg = (p: PropertyKey) => (typeof p === 'number' ? `[${p}]` : /^[A-Za-z0-9_-]+$/.test(String(p)) ? String(p) : JSON.stringify(String(p)));
  return path.map(seg).join('.').replace(/\.\[/g, '[');
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

/** One line per zod issue: field path, what was expected, what was found, and a hint for typos. */
function formatIssues(issues: readonly z.core.$ZodIssue[], schemaAt: (path: readonly PropertyKey[]) => JsonSchema | undefined): string[] {
  const lines: string[] = [];
  for (const iss of issues) {
    const at = fmtPath(iss.path);
    switch (iss.code) {
      case 'unrecognized_keys': {
        const known = Object.keys(schemaAt(iss.path)?.properties ?? {});
        for (const key of iss.keys) {
          const hint = nearMiss(key, known);
          const where = fmtPath([...iss.path, key]);
          lines.push(`${where}: unknown key${hint ? ` (did you mean "${hint}"?)` : ''}${known.length ? `; expected one of ${known.join(', ')}` : ''}`);
        }
        break;
      }
      case 'invalid_type':
        lines.push(`${at}: expected ${iss.expected}, got ${describeValue(iss.input)}`);
        break;
      case 'invalid_value':
        lines.push(`${at}: expected one of ${iss.values.map((v) => JSON.stringify(v)).join(', ')}, got ${describeValue(iss.input)}`);
        break;
      case 'invalid_union': {
        // Our unions carry their own message; fall back to the first branch's complaint.
        if (iss.message && !iss.message.startsWith('Invalid input')) lines.push(`${at}: ${iss.message}`);
        else lines.push(`${at}: ${iss.errors[0]?.[0]?.message ?? 'invalid value'}, got ${describeValue(iss.input)}`);
        break;
      }
      default:
        lines.push(`${at}: ${iss.message}`);
    }
  }
  return lines;
}

/** Applies CBR_* variables onto the raw (pre-validation) document; values are read as YAML scalars. */
function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv, leaves: string[][]): string[] {
  const applied: string[] = [];
  const targets = new Map<string, string[]>();
  for (const path of leaves) targets.set(envNameFor(path), path);
  for (const [name, path] of Object.entries(ENV_ALIASES)) targets.set(name, path);
  for (const [name, value] of Object.entries(env)) {
    const path = targets.get(name);
    if (!path || value === undefined) continue;
    let node: Record<string, unknown> = raw;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (next === undefined || next === null) node[key] = {};
      else if (typeof next !== 'object' || Array.isArray(next)) break;
      node = node[key] as Record<string, unknown>;
    }
    let parsed: unknown;
    try {
      parsed = parseYamlScalar(value);
    } catch {
      parsed = value;
    }
    node[path[path.length - 1]!] = parsed;
    applied.push(name);
  }
  return applied;
}

/** Parses YAML text; syntax errors carry line and column. */
export function parseConfigText(text: string, source: string): Record<string, unknown> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0] ?? lineCounter.linePos(e.pos[0]);
        return `${source}:${pos.line}:${pos.col}: YAML syntax error: ${e.message.split('\n')[0]}`;
      }),
      source,
    );
  }
  let value: unknown;
  try {
    // toJS resolves aliases: an undefined anchor or an alias bomb fails here, not in the parser.
    value = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError([`${source}: YAML error: ${errorMessage(err).split('\n')[0]}`], source);
  }
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError([`(root): expected a mapping of sections, got ${describeValue(value)}`], source);
  }
  return value as Record<string, unknown>;
}

export interface LoadedConfig<C> {
  config: C;
  path: string;
  envOverrides: string[];
}

/** One schema's loader: validation, env overrides, leaf paths and the JSON Schema for docs. */
export class ConfigLoader<C> {
  private json?: JsonSchema;

  constructor(private readonly schema: z.ZodType<C, unknown>) {}

  /** The schema as JSON Schema (input side): used for docs, env names and near-miss hints. */
  jsonSchema(): JsonSchema {
    this.json ??= z.toJSONSchema(this.schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
    return this.json;
  }

  /** Every leaf field's path (what CBR_* variables can override). */
  leafPaths(): string[][] {
    return leafPathsOf(this.jsonSchema());
  }

  applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): string[] {
    return applyEnv(raw, env, this.leafPaths());
  }

  /** Validates an already-parsed document (after env overrides). */
  validate(raw: unknown, source = '(config)'): C {
    const result = this.schema.safeParse(raw, { reportInput: true });
    if (!result.success)
      throw new ConfigError(
        formatIssues(result.error.issues, (p) => this.schemaAt(p)),
        source,
      );
    return result.data;
  }

  /** Reads, overrides and validates; throws ConfigError whose lines are ready to print. */
  loadFile(path: string, env: NodeJS.ProcessEnv = process.env): LoadedConfig<C> {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a directory' : errorMessage(err);
      throw new ConfigError([`${path}: cannot read config file: ${why}`], path);
    }
    const raw = parseConfigText(text, path);
    const envOverrides = this.applyEnvOverrides(raw, env);
    return { config: this.validate(raw, path), path, envOverrides };
  }

  /** Walks object properties down `path`; undefined when the path leaves the declared shape. */
  private schemaAt(path: readonly PropertyKey[]): JsonSchema | undefined {
    let node: JsonSchema | undefined = this.jsonSchema();
    for (const key of path) {
      if (!node) return undefined;
      if (typeof key === 'number') node = node.items;
      else node = node.properties?.[String(key)] ?? node.anyOf?.find((s) => s.properties?.[String(key)])?.properties?.[String(key)];
    }
    return node;
  }
}
