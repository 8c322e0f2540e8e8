// The drop-cost part of bench/xdp alone (`node dist/bench/xdp-drop.js [frames|skb]...`): prints its
// metrics as JSON on stdout with the load average, and writes no results file. QUICK=1 shortens it.
import { loadavg } from 'node:os';
import { dropCostBench } from './xdp-drop-cost.js';

const args = process.argv.slice(2);
const bad = args.filter((a) => a !== 'frames' && a !== 'skb');
if (bad.length) {
  process.stderr.write(`usage: xdp-drop [frames|skb]... (not: ${bad.join(' ')})\n`);
  process.exit(2);
}
const loadBefore = loadavg();
const results = await dropCostBench({
  quick: process.env.QUICK === '1',
  say: (m) => process.stderr.write(`[bench xdp-drop] ${m}\n`),
  sources: args.length ? (args as Array<'frames' | 'skb'>) : undefined,
});
process.stdout.write(`${JSON.stringify({ results, load: { before: loadBefore, after: loadavg() } }, null, 1)}\n`);
