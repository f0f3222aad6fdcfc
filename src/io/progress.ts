/**
 * One progress line per download on stderr: redrawn in place on a terminal, otherwise a line
 * when it starts and one when it ends (logs and pipes get no carriage-return noise).
 */
import { formatBytes } from "../util/format.js";

export class ProgressLine {
  private readonly tty: boolean;
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private started = false;

  constructor(
    private readonly out: NodeJS.WritableStream,
    private readonly label: string,
    private readonly total: number | null,
  ) {
    this.tty = (out as NodeJS.WriteStream).isTTY === true;
  }

  update(received: number): void {
    if (!this.started) {
      this.started = true;
      if (!this.tty) this.out.write(`downloading ${this.label}${this.total !== null ? ` (${formatBytes(this.total)})` : ""}${received > 0 ? `, resuming at ${formatBytes(received)}` : ""}\n`);
    }
    const now = performance.now();
    if (!this.tty || now - this.lastDraw < 200) return;
    this.lastDraw = now;
    const pct = this.total ? ` ${((100 * received) / this.total).toFixed(0).padStart(3)}%` : "";
    this.out.write(`\r${this.label}:${pct} ${formatBytes(received)}${this.total ? ` / ${formatBytes(this.total)}` : ""} ${this.rate(received)}\x1b[K`);
  }

  done(received: number): void {
    const line = `${this.label}: ${formatBytes(received)} in ${((performance.now() - this.t0) / 1000).toFixed(1)} s (${this.rate(received)})`;
    this.out.write(this.tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  private rate(bytes: number): string {
    const s = (performance.now() - this.t0) / 1000;
    return `${formatBytes(s > 0 ? bytes / s : 0)}/s`;
  }
}
