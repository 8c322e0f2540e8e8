// The TypeScript mirror of cbr_xdp.h against the compiled objects' BTF (`bpftool btf dump -j`):
// every struct's size and every field's offset and size must match, in both objects.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_OBJECT_DIR } from './loader.js';
import { LAYOUTS, REASONS, ACTIONS, COUNTERS } from './maps.js';

interface BtfType {
  id: number;
  kind: string;
  name: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: Array<{ name: string; type_id: number; bits_offset: number }>;
}

function btf(object: string): Map<number, BtfType> {
  const j = JSON.parse(execFileSync('bpftool', ['btf', 'dump', 'file', join(DEFAULT_OBJECT_DIR, object), '-j']).toString()) as { types: BtfType[] };
  return new Map(j.types.map((t) => [t.id, t]));
}

function sizeOf(types: Map<number, BtfType>, id: number): number {
  const t = types.get(id)!;
  switch (t.kind) {
    case 'INT':
    case 'STRUCT':
    case 'UNION':
    case 'ENUM':
      return t.size!;
    case 'ARRAY':
      return t.nr_elems! * sizeOf(types, t.type_id!);
    case 'TYPEDEF':
    case 'CONST':
    case 'VOLATILE':
      return sizeOf(types, t.type_id!);
    default:
      throw new Error(`unexpected BTF kind ${t.kind}`);
  }
}

const IN_OBJECT: Record<string, string[]> = {
  'filter.bpf.o': ['cbr_config', 'cbr_counter', 'cbr_lpm4', 'cbr_lpm6', 'cbr_rl_key', 'cbr_rl_state', 'cbr_dst', 'cbr_ports', 'cbr_pre4', 'cbr_parse'],
  'lb.bpf.o': ['cbr_config', 'cbr_counter', 'cbr_parse', 'cbr_vip_key', 'cbr_vip', 'cbr_backend'],
};

test('struct layouts in maps.ts match the BTF of the compiled objects', () => {
  const checked = new Set<string>();
  for (const [object, names] of Object.entries(IN_OBJECT)) {
    const types = btf(object);
    for (const name of names) {
      const s = [...types.values()].find((t) => t.kind === 'STRUCT' && t.name === name);
      assert.ok(s, `${object}: struct ${name} not in BTF`);
      const mirror = LAYOUTS[name as keyof typeof LAYOUTS];
      assert.equal(mirror.size, s.size, `${name}: size`);
      const btfFields = Object.fromEntries(s.members!.map((m) => [m.name, { offset: m.bits_offset / 8, size: sizeOf(types, m.type_id) }]));
      assert.deepEqual(mirror.fields, btfFields, `${object}: ${name} fields`);
      checked.add(name);
    }
  }
  assert.deepEqual([...checked].sort(), Object.keys(LAYOUTS).sort(), 'every mirrored struct was checked');
});

test('the reason and action enums match the C header (enum constants are not in BTF)', () => {
  const header = readFileSync(join(DEFAULT_OBJECT_DIR, '..', 'src', 'cbr_xdp.h'), 'utf8');
  const consts = (prefix: string) =>
    [...header.matchAll(new RegExp(`\\b${prefix}([A-Z0-9_]+) = (\\d+),`, 'g'))].map((m) => [m[1]!.toLowerCase(), Number(m[2])] as const);
  assert.deepEqual(
    consts('CBR_R_').filter(([n]) => n !== 'max'),
    REASONS.map((r, i) => [r, i]),
  );
  assert.deepEqual(
    consts('CBR_ACT_'),
    ACTIONS.map((a, i) => [a, i]),
  );
  assert.equal(COUNTERS, 4 * 16);
});
