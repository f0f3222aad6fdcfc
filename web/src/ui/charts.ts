/**
 * The playground's live charts (Chart.js): per-token latency and state bytes against position,
 * training loss against step, passkey accuracy per model. Each run adds its own series, so
 * architectures can be compared side by side; redraws are batched to one per animation frame.
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LogarithmicScale,
  LineController,
  LineElement,
  PointElement,
  Title,
  Tooltip,
  type ChartDataset,
} from "chart.js";

Chart.register(LineController, LineElement, PointElement, LinearScale, LogarithmicScale, CategoryScale, BarController, BarElement, Legend, Title, Tooltip);

const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#c026d3"];

export type Point = { x: number; y: number };

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** A line chart whose series are added per run and extended point by point. */
export class LiveLineChart {
  readonly chart: Chart<"line", Point[]>;
  private dirty = false;
  private colors = 0;

  constructor(canvas: HTMLCanvasElement, title: string, xLabel: string, yLabel: string, yFormat?: (v: number) => string, logY = false) {
    this.chart = new Chart(canvas, {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        plugins: {
          title: { display: true, text: title },
          legend: { position: "bottom", labels: { boxWidth: 12, filter: (item) => item.text !== "" } },
        },
        scales: {
          x: { type: "linear", title: { display: true, text: xLabel } },
          y: {
            type: logY ? "logarithmic" : "linear",
            title: { display: true, text: yLabel },
            ticks: yFormat ? { callback: (v) => yFormat(Number(v)) } : {},
            beginAtZero: !logY,
          },
        },
        elements: { point: { radius: 0 }, line: { borderWidth: 2, tension: 0 } },
      },
    });
  }

  /** A new series; returns its index. `dash` draws it dashed (recurrent state beside a KV cache). */
  addSeries(label: string, dash = false, sameColorAsLast = false): number {
    if (!sameColorAsLast) this.colors++;
    const color = PALETTE[(this.colors - 1) % PALETTE.length];
    const ds: ChartDataset<"line", Point[]> = { label, data: [], borderColor: color, backgroundColor: color, borderDash: dash ? [6, 4] : [] };
    this.chart.data.datasets.push(ds);
    this.schedule();
    return this.chart.data.datasets.length - 1;
  }

  /**
   * A series drawn as faint dots with no legend entry, beside a line of the same color (the
   * raw per-token times under their running median).
   */
  addDots(sameColorAs: number): number {
    const color = this.chart.data.datasets[sameColorAs].borderColor as string;
    const ds: ChartDataset<"line", Point[]> = {
      label: "",
      data: [],
      borderColor: color + "55",
      backgroundColor: color + "55",
      showLine: false,
      pointRadius: 1.5,
    };
    this.chart.data.datasets.push(ds);
    this.schedule();
    return this.chart.data.datasets.length - 1;
  }

  push(series: number, p: Point): void {
    this.chart.data.datasets[series].data.push(p);
    this.schedule();
  }

  clear(): void {
    this.chart.data.datasets = [];
    this.colors = 0;
    this.schedule();
  }

  private schedule(): void {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => {
      this.dirty = false;
      this.chart.update("none");
    });
  }
}

export function latencyChart(canvas: HTMLCanvasElement): LiveLineChart {
  // logarithmic: a GC pause or a shader compilation is 10-100x a typical token and would flatten the rest
  return new LiveLineChart(canvas, "Per-token decode latency (dots: each token; line: running median of 9)", "position (tokens in context)", "ms / token (log)", (v) => (/^[125]/.test(String(v)) ? `${v} ms` : ""), true);
}

export function memoryChart(canvas: HTMLCanvasElement): LiveLineChart {
  return new LiveLineChart(canvas, "Inference state: KV cache (solid) vs recurrent state (dashed)", "position (tokens in context)", "bytes", formatBytes);
}

export function lossChart(canvas: HTMLCanvasElement, title: string): LiveLineChart {
  return new LiveLineChart(canvas, title, "step", "loss");
}

/** Passkey accuracy per model, one bar each. */
export class AccuracyChart {
  readonly chart: Chart<"bar", number[], string>;

  constructor(canvas: HTMLCanvasElement) {
    this.chart = new Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [{ label: "passkey accuracy", data: [], backgroundColor: PALETTE }] },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: { title: { display: true, text: "Passkey accuracy" }, legend: { display: false } },
        scales: { y: { min: 0, max: 1, title: { display: true, text: "fraction of keys recalled" } } },
      },
    });
  }

  set(label: string, accuracy: number): void {
    const labels = this.chart.data.labels!;
    const i = labels.indexOf(label);
    if (i >= 0) this.chart.data.datasets[0].data[i] = accuracy;
    else {
      labels.push(label);
      this.chart.data.datasets[0].data.push(accuracy);
    }
    this.chart.update("none");
  }

  clear(): void {
    this.chart.data.labels = [];
    this.chart.data.datasets[0].data = [];
    this.chart.update("none");
  }
}

/** Median of the last `n` values pushed (the latency line: one slow token, a GC pause, does not hide the trend). */
export class RunningMedian {
  private readonly window: number[] = [];

  constructor(private readonly n = 9) {}

  push(v: number): number {
    this.window.push(v);
    if (this.window.length > this.n) this.window.shift();
    const s = [...this.window].sort((a, b) => a - b);
    return s[s.length >> 1];
  }
}

export { formatBytes };
