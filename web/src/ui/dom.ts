/** Small DOM helpers and the page's one-job-at-a-time guard. */

export function $<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`internal: no element #${id}`);
  return el as T;
}

export function num(id: string): number {
  return Number($<HTMLInputElement>(id).value);
}

export function setInfo(id: string, text: string, error = false): void {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", error);
}

/**
 * The engine runs one job at a time: while one runs, every start button is disabled and the
 * stop buttons are enabled.
 */
export class Busy {
  running: string | null = null;
  private readonly starters: HTMLButtonElement[] = [];
  private readonly stoppers: HTMLButtonElement[] = [];

  register(start: HTMLButtonElement[], stop: HTMLButtonElement[] = []): void {
    this.starters.push(...start);
    this.stoppers.push(...stop);
    this.render();
  }

  async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    this.running = what;
    this.render();
    try {
      return await fn();
    } finally {
      this.running = null;
      this.render();
    }
  }

  private render(): void {
    for (const b of this.starters) b.disabled = this.running !== null;
    for (const b of this.stoppers) b.disabled = this.running === null;
  }
}

export function fmtInt(n: number): string {
  return n.toLocaleString("en-US");
}
