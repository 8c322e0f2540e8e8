// systemd's notify protocol (sd_notify(3)): one datagram per state change to $NOTIFY_SOCKET, and
// WATCHDOG=1 pings at half of $WATCHDOG_USEC. Without NOTIFY_SOCKET everything here is a no-op.
import { socket, sendto, close, sockaddrUn, AF_UNIX, SOCK_DGRAM, SOCK_CLOEXEC } from './os/libc.js';
import type { Logger } from './log.js';

export class SystemdNotifier {
  private fd?: number;
  private addr?: Buffer;
  private watchdogTimer?: NodeJS.Timeout;

  constructor(
    private readonly log: Logger,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    const path = env.NOTIFY_SOCKET;
    if (!path) return;
    try {
      this.addr = sockaddrUn(path);
      this.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC);
    } catch (err) {
      this.log.warn({ err, socket: path }, 'cannot open NOTIFY_SOCKET; systemd notifications are off');
    }
  }

  get enabled(): boolean {
    return this.fd !== undefined;
  }

  notify(...states: string[]): void {
    if (this.fd === undefined || !this.addr) return;
    try {
      sendto(this.fd, Buffer.from(states.join('\n')), 0, this.addr);
    } catch (err) {
      this.log.warn({ err, states }, 'sd_notify failed');
    }
  }

  ready(status = 'running'): void {
    this.notify('READY=1', `STATUS=${status}`, `MAINPID=${process.pid}`);
  }

  reloading(): void {
    // MONOTONIC_USEC lets systemd (Type=notify-reload) match the reload to this message.
    const usec = process.hrtime.bigint() / 1000n;
    this.notify('RELOADING=1', `MONOTONIC_USEC=${usec}`, 'STATUS=reloading');
  }

  stopping(): void {
    this.notify('STOPPING=1', 'STATUS=stopping');
  }

  status(text: string): void {
    this.notify(`STATUS=${text}`);
  }

  /** Starts WATCHDOG=1 pings at half the interval systemd asked for (if it asked, and for us). */
  startWatchdog(isHealthy: () => boolean = () => true): void {
    const usec = Number(this.env.WATCHDOG_USEC);
    const pid = this.env.WATCHDOG_PID;
    if (!this.enabled || !Number.isFinite(usec) || usec <= 0) return;
    if (pid && Number(pid) !== process.pid) return;
    const everyMs = Math.max(1, Math.floor(usec / 1000 / 2));
    const ping = () => {
      // A blocked event loop never gets here, which is exactly what the watchdog is for.
      if (isHealthy()) this.notify('WATCHDOG=1');
    };
    ping();
    this.watchdogTimer = setInterval(ping, everyMs);
    this.watchdogTimer.unref();
  }

  close(): void {
    clearInterval(this.watchdogTimer);
    if (this.fd !== undefined) {
      try {
        close(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
  }
}
