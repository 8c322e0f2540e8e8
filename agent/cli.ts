#!/usr/bin/env node
// `cbr`: the agent and its operator tools. Every failure ends with one clear line per problem on
// stderr and a non-zero exit, never a stack trace.
import { Command, CommanderError } from 'commander';
import { stringify as toYaml } from 'yaml';
import {
  ConfigError,
  envNameFor,
  VERSION,
  adminClientFromOptions,
  withAdminOptions,
  redactSecrets,
  errorMessage,
  exitCodeFor,
  STATUS_PAGE_JSON,
  type StatusSnapshot,
} from '../dataplane/index.js';
import { formatStatus, type AgentStatus } from './status-format.js';
import { configLoader } from './config/schema.js';
import { renderConfigDocs } from './config/docs.js';
import { Agent } from './agent.js';
import { registerAuthCommands } from '../auth/index.js';
import { registerXdpCommands } from '../xdp/index.js';
import { registerMasqueCommands, registerWireguardCommands } from '../tunnel/index.js';
import { registerBgpCommands } from '../bgp/index.js';

const program = new Command();
program
  .name('cbr')
  .description('CloudBridge PoP agent: XDP fast path, MASQUE and WireGuard termination, anycast through BIRD')
  .version(VERSION)
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride();

program
  .command('agent')
  .description('run the PoP agent in the foreground (as a systemd-run or systemd service)')
  .option('-c, --config <file>', 'YAML config file (default: CBR_CONFIG; without either, embedded defaults with every subsystem off)')
  .action(async (opts: { config?: string }) => {
    const path = opts.config ?? process.env.CBR_CONFIG;
    const loaded = path ? configLoader.loadFile(path) : { config: configLoader.validate(envOnly()), path: undefined, envOverrides: [] };
    const agent = new Agent({ config: loaded.config, configPath: loaded.path });
    if (loaded.envOverrides.length) agent.log.info({ variables: loaded.envOverrides }, 'config overridden from the environment');
    process.on('uncaughtException', (err) => {
      agent.log.fatal({ err }, 'uncaught exception; shutting down');
      void agent.shutdown('uncaughtException').then(() => process.exit(1));
    });
    process.on('unhandledRejection', (err) => agent.log.error({ err }, 'unhandled promise rejection'));
    const exitCode = agent.runUntilSignalled();
    await agent.start();
    process.exit(await exitCode);
  });

/** The embedded defaults plus CBR_* overrides, for `cbr agent` without a file. */
function envOnly(): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  configLoader.applyEnvOverrides(raw, process.env);
  return raw;
}

const configCmd = program.command('config').description('validate and document the agent config');
configCmd
  .command('check')
  .description('validate a config file (with CBR_* overrides) and exit 0 if the agent would accept it')
  .argument('<file>', 'YAML config file')
  .option('--print', 'print the effective config (defaults filled in) as YAML, inline secrets censored')
  .action((file: string, opts: { print?: boolean }) => {
    const { config, envOverrides } = configLoader.loadFile(file);
    if (opts.print) process.stdout.write(toYaml(redactSecrets(config)));
    else process.stdout.write(`${file}: ok${envOverrides.length ? ` (with ${envOverrides.join(', ')})` : ''}\n`);
  });
configCmd
  .command('docs')
  .description('print the config reference (Markdown) generated from the schema')
  .action(() => {
    process.stdout.write(renderConfigDocs());
  });
configCmd
  .command('env')
  .description('list the CBR_* environment variables that override config fields')
  .action(() => {
    for (const path of configLoader.leafPaths()) process.stdout.write(`${envNameFor(path)}\t${path.join('.')}\n`);
    process.stdout.write('CBR_LOG_LEVEL\tlog.level\nCBR_CC\ttunnel.masque.congestionControl\nCBR_CONFIG\tconfig file for `cbr agent`\n');
  });

withAdminOptions(program.command('status').description("show the running agent's status: health, BGP, tunnels, XDP, children (GET /v1/status)"))
  .option('--json', 'print JSON for scripts: /v1/status plus bgp, tunnels and xdp from /v1/status/page')
  .action(async (opts: { admin?: string; config?: string; json?: boolean }) => {
    const client = adminClientFromOptions(opts);
    const [st, page] = await Promise.all([client.get('/v1/status') as Promise<AgentStatus>, client.get(STATUS_PAGE_JSON) as Promise<StatusSnapshot>]);
    process.stdout.write(opts.json ? `${JSON.stringify({ ...st, bgp: page.bgp, tunnels: page.tunnels, xdp: page.xdp }, null, 2)}\n` : formatStatus(st, page));
  });
withAdminOptions(program.command('reload').description('ask the running agent to reload its config (like SIGHUP)')).action(async (opts) => {
  await adminClientFromOptions(opts).post('/v1/reload');
  process.stdout.write('reloaded\n');
});

registerAuthCommands(program);
registerXdpCommands(program);
registerMasqueCommands(program);
registerWireguardCommands(program);
registerBgpCommands(program);

function fail(lines: string[], err: unknown): never {
  for (const l of lines) process.stderr.write(`${l}\n`);
  process.exit(exitCodeFor(err));
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    process.exit(err.exitCode);
  }
  if (err instanceof ConfigError) fail(err.problems, err);
  fail([`cbr: ${errorMessage(err)}`], err);
}
