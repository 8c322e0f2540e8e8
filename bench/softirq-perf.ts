// NET_RX softirq CPU time of chosen threads on one CPU, from `perf record`: cpu-clock sampled every
// 100 µs of CPU time with kernel call chains, a sample counting when its thread is one of ours and
// its stack holds net_rx_action. /proc/stat's softirq column cannot do this: it is tick-sampled here
// (no IRQ_TIME_ACCOUNTING, HZ=250) and counts every job's softirq on the CPU, and on this shared
// machine other jobs' veth traffic comes and goes.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { run } from '../testhosts/index.js';

/** CPU time each sample stands for (ns of cpu-clock). */
const PERIOD_NS = 100_000;

/** The parent pid of a process, or undefined when it is gone. */
function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined; // exited between readdir and read
  }
}

/** The live processes under `root` (not root itself). */
export function descendants(root: number): number[] {
  const pids = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);
  const parent = new Map(pids.map((p) => [p, parentOf(p)]));
  const out: number[] = [];
  let frontier = [root];
  while (frontier.length) {
    const next = pids.filter((p) => frontier.includes(parent.get(p) ?? -1));
    out.push(...next);
    frontier = next;
  }
  return out;
}

/** The thread id of ksoftirqd/<cpu>, where softirq work goes when it is deferred. */
export function ksoftirqd(cpu: number): number | undefined {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/comm`, 'utf8').trim() === `ksoftirqd/${cpu}`) return Number(d);
    } catch {
      /* exited meanwhile */
    }
  }
  return undefined;
}

export class SoftirqPerf {
  private proc: ChildProcess | undefined;

  private constructor(
    private readonly cpu: number,
    private readonly file: string,
  ) {}

  /** A sampler writing to `file`, or undefined when perf cannot sample this CPU here. */
  static async open(cpu: number, file: string): Promise<SoftirqPerf | undefined> {
    try {
      await run(['perf', 'record', '-q', '-C', String(cpu), '-e', 'cpu-clock', '-c', String(PERIOD_NS), '-g', '-o', file, '--', 'sleep', '0.05'], {
        timeoutMs: 15_000,
      });
      return new SoftirqPerf(cpu, file);
    } catch {
      return undefined; // no perf, or no permission: the caller falls back to /proc/stat
    }
  }

  /** Starts sampling; resolves once perf has had time to set up its events. */
  async start(): Promise<void> {
    rmSync(this.file, { force: true }); // so a recording that fails cannot leave the last one to be read
    this.proc = spawn('perf', ['record', '-q', '-C', String(this.cpu), '-e', 'cpu-clock', '-c', String(PERIOD_NS), '-g', '-o', this.file], {
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 400));
  }

  /** Stops sampling (SIGINT, so perf writes its file), within 15 s. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGINT');
    const timer = setTimeout(() => p.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }

  /**
   * NET_RX softirq CPU time (ns) of the given threads in the last recording and the samples it rests
   * on; to check it against: all their CPU time on the CPU (cpuNs), the part inside an XDP live-frames
   * test run (runNs: stack holds bpf_prog_test_run_xdp), and the NET_RX time inside that (netRxInRunNs).
   */
  async netRxNs(tids: Set<number>): Promise<NetRxTime> {
    const script = spawn('perf', ['script', '-i', this.file, '-F', 'tid,ip,sym'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const timer = setTimeout(() => script.kill('SIGKILL'), 120_000);
    const n = { netRx: 0, all: 0, run: 0, netRxInRun: 0 };
    // the sample being read: whether it is ours, and what its frames (tab-indented, after the header) hold
    let cur: { netRx: boolean; run: boolean } | undefined;
    const commit = () => {
      if (!cur) return;
      n.all++;
      if (cur.netRx) n.netRx++;
      if (cur.run) n.run++;
      if (cur.netRx && cur.run) n.netRxInRun++;
    };
    for await (const line of createInterface({ input: script.stdout! })) {
      if (line === '') continue;
      if (!line.startsWith('\t')) {
        commit(); // a sample's header line: the tid
        cur = tids.has(Number(line.trim().split(/\s+/)[0])) ? { netRx: false, run: false } : undefined;
      } else if (cur) {
        if (/\snet_rx_action\b/.test(line)) cur.netRx = true;
        else if (/\sbpf_prog_test_run_xdp\b/.test(line)) cur.run = true;
      }
    }
    commit();
    clearTimeout(timer);
    return { ns: n.netRx * PERIOD_NS, samples: n.netRx, cpuNs: n.all * PERIOD_NS, runNs: n.run * PERIOD_NS, netRxInRunNs: n.netRxInRun * PERIOD_NS };
  }
}

export interface NetRxTime {
  ns: number;
  samples: number;
  cpuNs: number;
  runNs: number;
  netRxInRunNs: number;
}
