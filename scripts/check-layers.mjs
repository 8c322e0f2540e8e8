#!/usr/bin/env node
// Fails when an import crosses the layers the wrong way (DESIGN.md, "Layout"):
//   testhosts/ (imports nothing of the project) <- dataplane/ <- xdp/ tunnel/ registry/ bgp/ auth/ <- agent/
// bench/ and *.test.ts may import anything. Across top folders an import goes through the folder's
// index.ts (tunnel/<part>/index.ts for tunnel/), never into another folder's files; a subsystem's
// test helpers (testing.ts) may also use other test helpers. Run by `make lint`.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), '..');
const RANK = { testhosts: 0, dataplane: 1, xdp: 2, tunnel: 2, registry: 2, bgp: 2, auth: 2, agent: 3, bench: 4 };
const SKIP = new Set(['node_modules', 'dist', '.git']);

function* sources(dir) {
  for (const name of readdirSync(dir)) {
    if (SKIP.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* sources(path);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) yield path;
  }
}

// Static imports and re-exports (`import … from`, `export … from`, `import '…'`) and dynamic import('…').
const IMPORT_RE = /(?:^|[\s;])(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

const top = (rel) => rel.split(sep)[0];
/** The unit an import must enter through: `tunnel/masque`, `xdp`, … */
function unitOf(rel) {
  const parts = rel.split(sep);
  return parts[0] === 'tunnel' && parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0];
}
const isTest = (rel) => rel.endsWith('.test.ts');
const isTestHelper = (rel) => /(^|\/)testing(-[a-z]+)?\.ts$/.test(rel);

const problems = [];
for (const file of sources(ROOT)) {
  const from = relative(ROOT, file);
  const fromTop = top(from);
  if (!(fromTop in RANK) || fromTop === 'bench' || isTest(from)) continue;
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith('.')) continue;
    const to = relative(ROOT, resolve(dirname(file), spec)).replace(/\.js$/, '.ts');
    const toTop = top(to);
    if (!(toTop in RANK)) {
      problems.push(`${from}: imports ${spec}, outside the project's folders`);
      continue;
    }
    if (unitOf(to) === unitOf(from)) continue;
    const line = text.slice(0, m.index + m[0].search(/\S/)).split('\n').length;
    const where = `${from}:${line}`;
    if (isTestHelper(from) && (isTestHelper(to) || toTop === 'testhosts')) continue;
    if (toTop === 'bench') problems.push(`${where}: imports ${to}; nothing outside bench/ may import bench/`);
    else if (fromTop === 'testhosts') problems.push(`${where}: imports ${to}; testhosts/ imports nothing of the project`);
    else if (RANK[toTop] > RANK[fromTop] || (RANK[toTop] === RANK[fromTop] && toTop === fromTop && fromTop !== 'tunnel')) {
      problems.push(
        `${where}: imports ${to}, a layer above (${fromTop}/ stands on ${
          Object.keys(RANK)
            .filter((k) => RANK[k] < RANK[fromTop])
            .join(', ') || 'nothing'
        })`,
      );
    } else if (toTop === 'testhosts') problems.push(`${where}: imports ${to}; only tests, test helpers and bench/ use the test hosts`);
    else if (!to.endsWith(`${unitOf(to)}${sep}index.ts`)) problems.push(`${where}: imports ${to}; go through ${unitOf(to)}/index.ts`);
  }
}

if (problems.length) {
  process.stderr.write(`${problems.length} import(s) cross the layers the wrong way:\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
  process.exit(1);
}
process.stdout.write('layers: every import points down\n');
