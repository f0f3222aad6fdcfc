/**
 * One progress line per download on stderr: redrawn in place on a terminal; otherwise a line when
 * it starts, one every 10 s while it runs, and one when it ends (no carriage returns in logs).
 */
import { formatBytes } from "../util/format.js";

export class ProgressLine {
  private readonly tty: boolean;
  private readonly t0 = performance.now();
  private lastDraw = 0;
  private started = false;
  /** bytes already there when it started (a resumed download) */
  private resumedAt = 0;

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
      this.resumedAt = received;
      if (!this.tty) this.out.write(`downloading ${this.label}${this.total !== null ? ` (${formatBytes(this.total)})` : ""}${received > 0 ? `, resuming at ${formatBytes(received)}` : ""}\n`);
    }
    const now = performance.now();
    if (this.lastDraw === 0) this.lastDraw = now;
    if (now - this.lastDraw < (this.tty ? 200 : 10_000)) return;
    this.lastDraw = now;
    const pct = this.total ? ` ${((100 * received) / this.total).toFixed(0).padStart(3)}%` : "";
    const line = `${this.label}:${pct} ${formatBytes(received)}${this.total ? ` / ${formatBytes(this.total)}` : ""} ${this.rate(received)}`;
    this.out.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  done(received: number): void {
    const line = `${this.label}: ${formatBytes(received)} in ${((performance.now() - this.t0) / 1000).toFixed(1)} s (${this.rate(received)})`;
    this.out.write(this.tty ? `\r${line}\x1b[K\n` : `${line}\n`);
  }

  private rate(bytes: number): string {
    const s = (performance.now() - this.t0) / 1000;
    return `${formatBytes(s > 0 ? (bytes - this.resumedAt) / s : 0)}/s`;
  }
}
