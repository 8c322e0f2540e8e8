// Generates docs/config.md from the config schema, so the reference cannot drift from the code.
import { envNameFor, type JsonSchema } from '../../dataplane/index.js';
import { configLoader } from './schema.js';

type Node = JsonSchema;

function typeOf(n: Node): string {
  if (n.enum) return n.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (n.anyOf) return [...new Set(n.anyOf.map(typeOf))].join(' or ');
  if (n.type === 'array') return `list of ${n.items ? typeOf(n.items) : 'any'}`;
  if (n.type === 'object' && n.properties) return 'mapping';
  const t = Array.isArray(n.type) ? n.type.join(' or ') : (n.type ?? 'any');
  return n.format ? `${t} (${n.format})` : t;
}

function rows(n: Node, path: string[], out: string[]): void {
  if (n.properties) {
    for (const [k, child] of Object.entries(n.properties)) {
      const p = [...path, k];
      if (child.properties && child.type === 'object') {
        out.push(`| **\`${p.join('.')}\`** | section | | ${child.description ?? ''} | |`);
        rows(child, p, out);
      } else {
        const dflt = child.default === undefined ? '' : `\`${JSON.stringify(child.default)}\``;
        const env = envNameFor(p);
        out.push(`| \`${p.join('.')}\` | ${typeOf(child)} | ${dflt} | ${(child.description ?? '').replace(/\|/g, '\\|')} | \`${env}\` |`);
        if (child.type === 'array' && child.items?.properties) {
          for (const [ik, item] of Object.entries(child.items.properties)) {
            const idflt = item.default === undefined ? '' : `\`${JSON.stringify(item.default)}\``;
            out.push(`| \`${p.join('.')}[].${ik}\` | ${typeOf(item)} | ${idflt} | ${(item.description ?? '').replace(/\|/g, '\\|')} | |`);
          }
        }
      }
    }
  }
}

export function renderConfigDocs(): string {
  const out = [
    '# `cbr agent` configuration reference',
    '',
    'Generated from the schema by `cbr config docs` (`make docs`); do not edit by hand.',
    '',
    'The file is YAML. Every field is optional unless the subsystem that uses it is enabled and says otherwise;',
    'unknown keys are errors. Durations are written `250ms`, `5s`, `2m`, `1h` (or a number of milliseconds).',
    'Each leaf field can be overridden by the environment variable in the last column (values are read as YAML',
    'scalars); `CBR_LOG_LEVEL` and `CBR_CC` (QUIC congestion control) are short aliases.',
    '`cbr config check FILE` validates a file; `cbr config check --print FILE` shows it with every default filled in.',
    '',
    '| field | type | default | meaning | environment |',
    '|---|---|---|---|---|',
  ];
  rows(configLoader.jsonSchema() as Node, [], out);
  return `${out.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(renderConfigDocs());
