#!/usr/bin/env node
// Removes network namespaces left by an earlier test run whose process is gone (`cbr-t<pid>-…`).
import { execFileSync } from 'node:child_process';

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const list = execFileSync('ip', ['netns', 'list'])
  .toString()
  .split('\n')
  .map((l) => l.split(' ')[0])
  .filter(Boolean);
for (const ns of list) {
  const m = /^cbr-t(\d+)-/.exec(ns);
  if (!m || alive(Number(m[1]))) continue;
  try {
    for (const pid of execFileSync('ip', ['netns', 'pids', ns]).toString().split(/\s+/).filter(Boolean)) process.kill(Number(pid), 'SIGKILL');
    execFileSync('ip', ['netns', 'del', ns]);
    process.stderr.write(`removed stale network namespace ${ns}\n`);
  } catch (err) {
    process.stderr.write(`could not remove ${ns}: ${err.message}\n`);
  }
}
