/**
 * The playground page: starts the engine worker, says which backend it runs on, and wires the
 * four panels (model, generation, training, passkey) to engine requests. Everything heavy
 * happens in the worker; the page only draws. `window.seqlab` exposes the state for tests.
 */
import { EngineClient } from "./client.js";
import type { BackendChoice, BackendInfo, ModelInfo } from "./protocol.js";
import { ARCHS, SIZES, type ArchName, type SizeName } from "./engine/choices.js";
import { AccuracyChart, latencyChart, lossChart, memoryChart } from "./ui/charts.js";
import { $, setInfo, Busy } from "./ui/dom.js";
import { wireModelPanel } from "./ui/model_panel.js";
import { wireGeneratePanel } from "./ui/generate_panel.js";
import { wireTrainPanel } from "./ui/train_panel.js";
import { wirePasskeyPanel } from "./ui/passkey_panel.js";

export interface Playground {
  client: EngineClient;
  backend: BackendInfo | null;
  model: ModelInfo | null;
  /** set once the backend is up and the first model is built, or startup failed */
  ready: boolean;
  startupError: string | null;
  busy: Busy;
  charts: {
    latency: ReturnType<typeof latencyChart>;
    memory: ReturnType<typeof memoryChart>;
    loss: ReturnType<typeof lossChart>;
    passkeyLoss: ReturnType<typeof lossChart>;
    passkeyAccuracy: AccuracyChart;
  };
  /** finished generations (tokens include the prompt) */
  generations: { tokens: number[]; prefillMs: number; decodeTokensPerSecond: number }[];
  passkeyRows: unknown[];
}

const params = new URLSearchParams(location.search);
const choice = (params.get("backend") ?? "auto") as BackendChoice;
const threads = params.has("threads") ? Number(params.get("threads")) : undefined;

const pg: Playground = {
  client: new EngineClient(new Worker(new URL("./engine.js", import.meta.url), { type: "module", name: "seqlab-engine" })),
  backend: null,
  model: null,
  ready: false,
  startupError: null,
  busy: new Busy(),
  charts: {
    latency: latencyChart($("latency-chart")),
    memory: memoryChart($("memory-chart")),
    loss: lossChart($("loss-chart"), "Training loss (passkey)"),
    passkeyLoss: lossChart($("pk-loss-chart"), "Passkey training loss per architecture"),
    passkeyAccuracy: new AccuracyChart($("pk-acc-chart")),
  },
  generations: [],
  passkeyRows: [],
};
(window as unknown as { seqlab: Playground }).seqlab = pg;

function fillSelect(sel: HTMLSelectElement, options: { value: string; label: string }[], selected?: string | null): void {
  for (const o of options) sel.add(new Option(o.label, o.value, false, o.value === selected));
}
const archOptions = ARCHS.map((a) => ({ value: a.name, label: a.label }));
const sizeOptions = (Object.keys(SIZES) as SizeName[]).map((s) => ({ value: s, label: SIZES[s].label }));
fillSelect($("arch"), archOptions, params.get("arch") as ArchName | null);
fillSelect($("size"), sizeOptions, params.get("size") ?? "small");
fillSelect($("pk-size"), sizeOptions, "small");
if (params.has("seed")) $<HTMLInputElement>("seed").value = params.get("seed")!;

function showBackend(info: BackendInfo): void {
  const el = $("backend");
  el.className = `backend ${info.name}`;
  const what = info.name === "webgpu" ? `WebGPU · adapter: ${info.adapter}` : `cpu · WebAssembly SIMD · ${info.threads} thread${info.threads === 1 ? "" : "s"}`;
  const details = document.createElement("details");
  const summary = document.createElement("summary");
  summary.append(`Backend: ${what} `, Object.assign(document.createElement("small"), { textContent: `(${info.reason})` }));
  details.append(summary, Object.assign(document.createElement("div"), { className: "describe", textContent: info.describe }));
  el.replaceChildren(details);
}

async function start(): Promise<void> {
  try {
    pg.backend = await pg.client.request<BackendInfo>({ kind: "init", backend: choice, threads });
    showBackend(pg.backend);
    const model = wireModelPanel(pg);
    wireGeneratePanel(pg);
    wireTrainPanel(pg);
    wirePasskeyPanel(pg);
    await model.createFresh();
  } catch (e) {
    pg.startupError = (e as Error).message;
    const el = $("backend");
    el.className = "backend failed";
    el.textContent = `Backend: none — ${pg.startupError}`;
    setInfo("model-info", "the engine did not start", true);
  } finally {
    pg.ready = true;
  }
}

void start();
