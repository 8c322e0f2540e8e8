import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import fc from 'fast-check';
import { parseConfigText, ConfigError, envNameFor, parseDurationMs, splitHostPort, isPrefix } from '../../dataplane/index.js';
import { configLoader } from './schema.js';
import { renderConfigDocs } from './docs.js';

const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples');
const loadConfigFile = (path: string, env: NodeJS.ProcessEnv) => configLoader.loadFile(path, env);
const validateConfig = (raw: unknown, source?: string) => configLoader.validate(raw, source);
const applyEnvOverrides = (raw: Record<string, unknown>, env: NodeJS.ProcessEnv) => configLoader.applyEnvOverrides(raw, env);
const configLeafPaths = () => configLoader.leafPaths();

function problemsOf(yaml: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    const raw = parseConfigText(yaml, 'test.yaml');
    applyEnvOverrides(raw, env);
    validateConfig(raw, 'test.yaml');
    return [];
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    return err.problems;
  }
}

test('every example config passes', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));
  assert.ok(files.includes('minimal.yaml') && files.includes('pop.yaml'));
  for (const f of files) loadConfigFile(join(EXAMPLES, f), {});
});

test('minimal.yaml: every subsystem off, admin on 127.0.0.1:9780', () => {
  const { config } = loadConfigFile(join(EXAMPLES, 'minimal.yaml'), {});
  assert.equal(config.admin.listen, '127.0.0.1:9780');
  for (const on of [config.auth.enabled, config.xdp.enabled, config.tunnel.masque.enabled, config.tunnel.wireguard.enabled, config.bgp.enabled])
    assert.equal(on, false);
});

test('pop.yaml: every subsystem on', () => {
  const { config } = loadConfigFile(join(EXAMPLES, 'pop.yaml'), {});
  for (const on of [config.auth.enabled, config.xdp.enabled, config.tunnel.masque.enabled, config.tunnel.wireguard.enabled, config.bgp.enabled])
    assert.equal(on, true);
});

test('an empty document gets every default', () => {
  const c = validateConfig({});
  assert.equal(c.admin.listen, '127.0.0.1:9780');
  assert.equal(c.lifecycle.shutdownTimeout, 30_000);
  assert.equal(c.log.level, 'info');
  assert.deepEqual(c.health.checks, []);
});

const BROKEN: Array<[string, string, RegExp]> = [
  ['admin listen without port', 'admin:\n  listen: abc\n', /^admin\.listen: expected host:port, got "abc"$/],
  ['port out of range', 'admin:\n  listen: 127.0.0.1:70000\n', /^admin\.listen: expected host:port/],
  ['wrong type', 'admin:\n  enabled: "yes"\n', /^admin\.enabled: expected boolean, got "yes"$/],
  ['unknown key with hint', 'admin:\n  lisen: 127.0.0.1:1\n', /^admin\.lisen: unknown key \(did you mean "listen"\?\)/],
  ['unknown section with hint', 'tunel: {}\n', /^tunel: unknown key \(did you mean "tunnel"\?\)/],
  ['unknown nested key', 'tunnel:\n  masque:\n    congestion: bbr\n', /^tunnel\.masque\.congestion: unknown key/],
  [
    'bad enum',
    'tunnel:\n  masque:\n    congestionControl: vegas\n',
    /^tunnel\.masque\.congestionControl: expected one of "bbr", "cubic", "reno", got "vegas"$/,
  ],
  ['bad duration', 'lifecycle:\n  shutdownTimeout: 5 minutes\n', /^lifecycle\.shutdownTimeout: expected a duration like "5s"/],
  ['negative duration', 'lifecycle:\n  shutdownTimeout: -5\n', /^lifecycle\.shutdownTimeout: expected a duration/],
  ['section not a mapping', 'admin: 3\n', /^admin: expected object, got 3$/],
  ['check without probe', 'health:\n  checks:\n    - name: x\n', /^health\.checks\[0\]: expected exactly one of command or http$/],
  [
    'check with both probes',
    'health:\n  checks:\n    - { name: x, command: ["true"], http: "http://127.0.0.1/" }\n',
    /^health\.checks\[0\]: expected exactly one/,
  ],
  ['check bad name', 'health:\n  checks:\n    - { name: "Bad Name", command: [true] }\n', /^health\.checks\[0\]\.name: expected a check name/],
  ['check rise 0', 'health:\n  checks:\n    - { name: x, command: [true], rise: 0 }\n', /^health\.checks\[0\]\.rise: /],
  ['bad log level', 'log:\n  level: loud\n', /^log\.level: expected one of "trace"/],
  ['short api token', 'admin:\n  apiToken: short\n', /^admin\.apiToken: expected at least 16 characters$/],
  ['bad interface name', 'xdp:\n  interface: "this-name-is-way-too-long"\n', /^xdp\.interface: expected a network interface name/],
  ['bad issuer url', 'auth:\n  issuer: not a url\n', /^auth\.issuer: /],
  ['root is a list', '- a\n- b\n', /^\(root\): expected a mapping of sections, got a list$/],
];

for (const [name, yaml, re] of BROKEN) {
  test(`broken config fails with its field path: ${name}`, () => {
    const problems = problemsOf(yaml);
    assert.ok(problems.length >= 1, 'expected at least one problem');
    assert.ok(
      problems.some((p) => re.test(p)),
      `no line matched ${re}:\n${problems.join('\n')}`,
    );
  });
}

test('several problems give one line each', () => {
  const problems = problemsOf('admin:\n  listen: abc\n  lisen: 1\nlog:\n  level: loud\n');
  assert.equal(problems.length, 3, problems.join('\n'));
});

test('YAML syntax errors carry line and column', () => {
  const problems = problemsOf('admin:\n  listen: [1\nlog: {\n');
  assert.match(problems[0]!, /^test\.yaml:\d+:\d+: YAML syntax error: /);
  const dup = problemsOf('admin: {}\nadmin: {}\n');
  assert.match(dup[0]!, /^test\.yaml:2:1: YAML syntax error: .*unique/i);
});

test('missing and unreadable files give one clear line', () => {
  assert.throws(
    () => loadConfigFile('/nonexistent/cbr.yaml', {}),
    (e: unknown) => e instanceof ConfigError && /^\/nonexistent\/cbr\.yaml: cannot read config file: no such file$/.test(e.problems[0]!),
  );
  const dir = mkdtempSync(join(tmpdir(), 'cbr-cfg-'));
  try {
    assert.throws(
      () => loadConfigFile(dir, {}),
      (e: unknown) => e instanceof ConfigError && /is a directory/.test(e.problems[0]!),
    );
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('CBR_* variables override file values, aliases included, and are validated', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-cfg-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'admin:\n  listen: 127.0.0.1:1000\n');
    const { config, envOverrides } = loadConfigFile(file, {
      CBR_ADMIN_LISTEN: '127.0.0.1:2000',
      CBR_LOG_LEVEL: 'debug',
      CBR_CC: 'cubic',
      CBR_LIFECYCLE_SHUTDOWN_TIMEOUT: '5s',
      CBR_AUTH_AUDIENCE: '[a, b]',
      CBR_UNRELATED: 'x',
    });
    assert.equal(config.admin.listen, '127.0.0.1:2000');
    assert.equal(config.log.level, 'debug');
    assert.equal(config.tunnel.masque.congestionControl, 'cubic');
    assert.equal(config.lifecycle.shutdownTimeout, 5000);
    assert.deepEqual(config.auth.audience, ['a', 'b']);
    assert.equal(envOverrides.length, 5);
    assert.throws(
      () => loadConfigFile(file, { CBR_CC: 'vegas' }),
      (e: unknown) => e instanceof ConfigError && /^tunnel\.masque\.congestionControl: expected one of/.test(e.problems[0]!),
    );
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('env names are derived from every leaf path', () => {
  assert.equal(envNameFor(['tunnel', 'masque', 'congestionControl']), 'CBR_TUNNEL_MASQUE_CONGESTION_CONTROL');
  const names = configLeafPaths().map(envNameFor);
  assert.equal(new Set(names).size, names.length, 'two fields map to the same variable');
});

test('durations, host:port and prefixes', () => {
  assert.equal(parseDurationMs('250ms'), 250);
  assert.equal(parseDurationMs('1.5s'), 1500);
  assert.equal(parseDurationMs('2m'), 120_000);
  assert.equal(parseDurationMs('1h'), 3_600_000);
  assert.equal(parseDurationMs('5'), undefined);
  assert.equal(parseDurationMs(-1), undefined);
  assert.deepEqual(splitHostPort('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(splitHostPort('pop.example:8443'), { host: 'pop.example', port: 8443 });
  assert.equal(splitHostPort('::1:443'), undefined);
  assert.equal(splitHostPort('a:65536'), undefined);
  assert.ok(isPrefix('192.0.2.0/24') && isPrefix('2001:db8::/32') && isPrefix('0.0.0.0/0'));
  assert.ok(!isPrefix('192.0.2.0/33') && !isPrefix('2001:db8::/129') && !isPrefix('192.0.2.0') && !isPrefix('x/8'));
});

test('property: any JSON document either validates or fails with ConfigError lines naming a path', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (doc) => {
      try {
        validateConfig(doc);
      } catch (err) {
        assert.ok(err instanceof ConfigError);
        for (const line of err.problems)
          assert.match(line, /^(\(root\)|([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(\.([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")|\[\d+\])*): \S/);
      }
    }),
    { numRuns: 500 },
  );
});

test('property: random YAML text never throws anything but ConfigError', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (text) => {
      try {
        validateConfig(parseConfigText(text, 'fuzz.yaml'));
      } catch (err) {
        assert.ok(err instanceof ConfigError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});

test('docs/config.md lists every leaf field', () => {
  const md = renderConfigDocs();
  for (const path of configLeafPaths()) assert.ok(md.includes(`\`${path.join('.')}\``), `docs miss ${path.join('.')}`);
});

test('connect-udp allowPorts: a port as a number or a string, or a range; anything else named', () => {
  const cfg = validateConfig({ tunnel: { masque: { udp: { allowPorts: ['15090', 53, '1000-2000', ' 80 '] } } } });
  assert.deepEqual(cfg.tunnel.masque.udp.allowPorts, [15090, 53, '1000-2000', 80]);
  const problems = problemsOf('tunnel:\n  masque:\n    udp:\n      allowPorts: ["0", 70000, "5-3", "abc"]\n');
  assert.equal(problems.length, 4, problems.join('\n'));
  for (const [i, bad] of ['"0"', '70000', '"5-3"', '"abc"'].entries())
    assert.equal(problems[i], `tunnel.masque.udp.allowPorts[${i}]: expected a port (1-65535) or a range like "1024-65535", got ${bad}`);
});
