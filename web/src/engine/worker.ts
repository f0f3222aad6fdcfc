/**
 * The engine worker: the whole seqlab engine runs here, off the page's main thread (the cpu
 * backend's thread pool blocks in Atomics.wait, which a page may not, and long kernels would
 * freeze the page). Requests run one after another; "stop" sets a flag that the running job
 * reads between tokens or training steps.
 */
import type { Backend } from "../../../src/backend/backend.js";
import { setDefaultBackend } from "../../../src/backend/registry.js";
import type { CausalLM } from "../../../src/models/causal_lm.js";
import { RawConfig } from "../../../src/io/config.js";
import { SafetensorsBuffer } from "../../../src/io/safetensors_buffer.js";
import { buildFromWeights } from "../../../src/models/load_weights.js";
import { PasskeyTask } from "../../../src/tasks/passkey.js";
import { SeqlabError } from "../../../src/util/errors.js";
import type { BackendInfo, EngineEvent, ModelInfo, Request, WorkerMessage } from "../protocol.js";
import { chooseBackend } from "./backend.js";
import { decode } from "./decode.js";
import { ARCHS, disposeModel, freshModel, layerKinds, presetConfig, SIZES } from "./models.js";
import { trainSteps } from "./train.js";
import { passkeyExperiment } from "./passkey.js";

interface WorkerScope {
  postMessage(m: WorkerMessage): void;
  onmessage: ((e: MessageEvent<{ id: number; req: Request }>) => void) | null;
}
const scope = self as unknown as WorkerScope;

let backend: Backend | null = null;
let backendInfo: BackendInfo | null = null;
let current: { model: CausalLM; info: ModelInfo } | null = null;
let stopRequested = false;
let queue: Promise<void> = Promise.resolve();

scope.onmessage = (e) => {
  const { id, req } = e.data;
  if (req.kind === "stop") {
    stopRequested = true;
    return;
  }
  queue = queue.then(() => handle(id, req));
};

async function handle(id: number, req: Request): Promise<void> {
  stopRequested = false;
  const emit = (event: EngineEvent) => scope.postMessage({ id, type: "event", event });
  try {
    const result = await run(req, emit);
    scope.postMessage({ id, type: "done", result });
  } catch (e) {
    const message = e instanceof SeqlabError ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`;
    scope.postMessage({ id, type: "error", message: message.split("\n")[0] });
  }
}

/**
 * Let queued messages (a stop) in, then say whether to stop. A MessageChannel round trip
 * yields to the event loop without setTimeout's clamping.
 */
const channel = new MessageChannel();
function pause(): Promise<boolean> {
  return new Promise((resolve) => {
    channel.port1.onmessage = () => resolve(stopRequested);
    channel.port2.postMessage(0);
  });
}

function needBackend(): Backend {
  if (!backend) throw new SeqlabError("the engine has no backend yet (init first)");
  return backend;
}

function needModel(): { model: CausalLM; info: ModelInfo } {
  if (!current) throw new SeqlabError("no model yet: create a fresh one or load a checkpoint");
  return current;
}

async function run(req: Request, emit: (e: EngineEvent) => void): Promise<unknown> {
  switch (req.kind) {
    case "init": {
      if (backend) return backendInfo;
      const chosen = await chooseBackend(req.backend, req.threads);
      backend = chosen.backend;
      backendInfo = chosen.info;
      setDefaultBackend(backend);
      return backendInfo;
    }
    case "fresh": {
      const be = needBackend();
      const model = freshModel(be, req.arch, req.size, req.vocab, req.seed);
      const label = `${ARCHS.find((a) => a.name === req.arch)!.label}, ${SIZES[req.size].label}, seed ${req.seed}`;
      return replaceModel(model, label, presetConfig(req.arch, req.size, req.vocab));
    }
    case "load": {
      const be = needBackend();
      const raw = RawConfig.parse(req.configName, req.configText);
      const weights = new SafetensorsBuffer(req.weightsName, new Uint8Array(req.weights));
      const model = buildFromWeights(raw, weights, be);
      return replaceModel(model, `${req.weightsName} (${raw.str("model_type")})`, raw.json);
    }
    case "generate": {
      const { model } = needModel();
      return decode(model, req, emit, pause);
    }
    case "train": {
      const { model } = needModel();
      const task = new PasskeyTask(req.length, req.seed, null);
      return trainSteps(model, task, req, "train", emit, pause);
    }
    case "passkey": {
      const be = needBackend();
      const cur = current ? { model: current.model, label: current.info.label } : null;
      return passkeyExperiment(be, cur, req, emit, pause);
    }
    case "stop":
      return null;
  }
}

function replaceModel(model: CausalLM, label: string, config: Record<string, unknown>): ModelInfo {
  if (current) disposeModel(current.model);
  const params = model.parameters();
  const info: ModelInfo = {
    label,
    modelType: model.config.modelType,
    vocab: model.config.V,
    width: model.config.C,
    layerKinds: layerKinds(model),
    parameters: params.reduce((n, t) => n + t.size, 0),
    parameterBytes: params.reduce((n, t) => n + t.bytes, 0),
    config,
  };
  current = { model, info };
  return info;
}
