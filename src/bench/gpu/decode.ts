/**
 * Decoding throughput on the webgpu backend: a ~130M-parameter Mamba and a Llama-style model of
 * the same width, greedy decoding through the inference state after a prompt of 16, 2k or 16k
 * tokens (prefilled in pieces, so no logits tensor of the whole prompt is materialised).
 *
 * So that PyTorch runs the very same models: `writeDecodeConfigs` writes each config.json into a
 * folder, scripts/bench_gpu_torch.py --decode-dir builds Hugging Face's MambaForCausalLM /
 * LlamaForCausalLM from it, saves the weights beside it and times them, and `modelDir` makes this
 * side load that folder. Without `modelDir` the weights are seeded random ones. Both sides use
 * the same prompt (`promptTokens`) and record the greedy tokens, which the report compares.
 *
 * Per context it reports tokens/s over `newTokens` greedy steps (each step submitted in pieces
 * as it is recorded, and one read of the last logits row), and, from GPU timestamps around one
 * step recorded whole and submitted at once, the GPU time per token: the difference is host time
 * (JavaScript, command recording, the read) that the GPU's work did not hide. The median step's
 * rate comes with it, since a busy host stalls a few steps and moves the mean.
 */
import type { WebGpuBackend } from "../../backend/webgpu/index.js";
import type { CausalLM } from "../../models/causal_lm.js";
import { buildModel } from "../../models/registry.js";
import { RawConfig } from "../../io/config.js";
import { ModuleContext } from "../../nn/module.js";
import { advance, lastPosition } from "../../generate/generate.js";
import { noGradAsync } from "../../autograd/tape.js";
import { tidyAsync } from "../../tensor/scope.js";
import { toFloat32 } from "../../backend/alloc.js";
import type { Tensor } from "../../tensor/tensor.js";
import { loadModel } from "../../models/load.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { gpuSeconds, type Result } from "./timing.js";
import { median } from "../../util/stats.js";

/** The two models (HF config.json fields); the PyTorch side builds the same. */
export const DECODE_MODELS: Record<string, Record<string, unknown>> = {
  mamba: { model_type: "mamba", hidden_size: 768, num_hidden_layers: 24, state_size: 16, expand: 2, conv_kernel: 4, vocab_size: 50280, tie_word_embeddings: true },
  llama: {
    model_type: "llama", hidden_size: 768, num_hidden_layers: 24, num_attention_heads: 12, num_key_value_heads: 12, intermediate_size: 2048,
    vocab_size: 32000, max_position_embeddings: 32768, tie_word_embeddings: false, rms_norm_eps: 1e-6,
  },
};

/** Small versions for --quick (and tests on SwiftShader). */
export const QUICK_MODELS: Record<string, Record<string, unknown>> = {
  mamba: { ...DECODE_MODELS.mamba, hidden_size: 64, num_hidden_layers: 2, vocab_size: 1000 },
  llama: { ...DECODE_MODELS.llama, hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, intermediate_size: 128, vocab_size: 1000 },
};

/** The prompt both sides feed (a formula rather than an RNG so that Python needs no port of it). */
export function promptTokens(n: number, V: number): number[] {
  return Array.from({ length: n }, (_, i) => (i * 7919 + 17) % V);
}

/** Writes DIR/NAME/config.json for each model, for scripts/bench_gpu_torch.py --decode-dir to build. */
export function writeDecodeConfigs(dir: string, models: Record<string, Record<string, unknown>>): void {
  for (const [name, cfg] of Object.entries(models)) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    fs.writeFileSync(path.join(dir, name, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
  }
}

/**
 * Bytes a decoding step must read at least: every weight matrix once (the input embedding only
 * its row, so an untied one is left out) and, for attention, the keys and values so far.
 */
function stepBytes(cfg: Record<string, unknown>, params: number, context: number): number {
  const num = (k: string, d = 0) => (typeof cfg[k] === "number" ? (cfg[k] as number) : d);
  const V = num("vocab_size");
  const H = num("hidden_size");
  const embedding = cfg.tie_word_embeddings === false ? V * H : 0;
  let kv = 0;
  if (cfg.model_type === "llama") {
    const heads = num("num_attention_heads");
    const headDim = num("head_dim", H / heads);
    kv = 2 * num("num_hidden_layers") * context * num("num_key_value_heads", heads) * headDim;
  }
  return 4 * (params - embedding + kv);
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** GPU seconds of one decoding step (timestamps around its recorded commands), and its logits. */
async function timedStep(be: WebGpuBackend, model: CausalLM, state: ReturnType<CausalLM["allocateState"]>, token: number): Promise<{ gpu: number | null; logits: Float32Array }> {
  return noGradAsync(() =>
    tidyAsync(async () => {
      const x = model.tokens([token], 1, 1, state.position); // (1, 1)
      let last: Tensor | null = null;
      // one submission, so that the timestamps bracket GPU work and no wait for the host
      const flushEvery = be.ctx.flushEvery;
      be.ctx.flushEvery = 0;
      let gpu: number | null;
      try {
        gpu = await gpuSeconds(be, () => {
          last = lastPosition(model.forward(x, { state }).logits); // (1, V)
        });
      } finally {
        be.ctx.flushEvery = flushEvery;
      }
      return { gpu, logits: await toFloat32(last!) };
    }),
  );
}

export interface DecodeOptions {
  contexts: number[];
  newTokens: number;
  /** prompt tokens per prefill call */
  piece: number;
  models: Record<string, Record<string, unknown>>;
  /** load DIR/NAME (config.json + model.safetensors, written by the PyTorch side) instead of seeded weights */
  modelDir?: string;
  /** the card's copy bandwidth (GB/s), for the bytes-per-token floor */
  copyGBs?: number;
  log?: (line: string) => void;
}

export async function benchDecode(be: WebGpuBackend, o: DecodeOptions): Promise<Result[]> {
  const results: Result[] = [];
  for (const [name, cfg] of Object.entries(o.models)) {
    const t0 = performance.now();
    const dir = o.modelDir ? path.join(o.modelDir, name) : null;
    if (dir && !fs.existsSync(path.join(dir, "model.safetensors"))) throw new Error(`${dir}: no model.safetensors (write it with scripts/bench_gpu_torch.py --decode-dir)`);
    const model = dir ? loadModel(dir, be) : buildModel(new RawConfig(`bench ${name}`, cfg), ModuleContext.seeded(be, 0));
    const fileCfg = dir ? (JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8")) as Record<string, unknown>) : cfg;
    const params = model.parameterCount();
    o.log?.(`# ${name}: ${(params / 1e6).toFixed(1)}M parameters, ${dir ? `loaded from ${dir}` : "seeded"} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    try {
      for (const ctxLen of o.contexts) {
        const prompt = promptTokens(ctxLen, model.config.V);
        // one untimed piece first, so that compiling this piece length's pipelines is not timed as prefill
        const warm = model.allocateState(1, o.piece);
        try {
          await advance(model, warm, prompt.slice(0, o.piece));
        } finally {
          warm.dispose();
        }
        const state = model.allocateState(1, ctxLen + o.newTokens + 8);
        try {
          const tp = performance.now();
          let logits: Float32Array = new Float32Array(0);
          for (let p = 0; p < ctxLen; p += o.piece) logits = await advance(model, state, prompt.slice(p, p + o.piece));
          const prefill = (performance.now() - tp) / 1000;
          // two steps untimed (pipelines of the single-token path), two with GPU timestamps
          let token = argmax(logits);
          const greedy = [token];
          for (let i = 0; i < 2; i++) greedy.push((token = argmax(await advance(model, state, [token]))));
          const gpu: number[] = [];
          for (let i = 0; i < 2; i++) {
            const s = await timedStep(be, model, state, token);
            if (s.gpu !== null) gpu.push(s.gpu);
            greedy.push((token = argmax(s.logits)));
          }
          const ctx = be.ctx;
          const [d0, s0, g0] = [ctx.dispatches, ctx.submits, ctx.bindGroupsCreated];
          const t1 = performance.now();
          const stepMs: number[] = [];
          for (let i = 0; i < o.newTokens; i++) {
            const ts = performance.now();
            token = argmax(await advance(model, state, [token]));
            stepMs.push(performance.now() - ts);
            if (greedy.length < 16) greedy.push(token);
          }
          const seconds = (performance.now() - t1) / 1000;
          // the median step too: on a busy host a few stalled steps move the mean, not the median
          const medianMs = median(stepMs);
          const n = o.newTokens;
          // the floor at the middle of the timed steps' context
          const bytes = stepBytes(fileCfg, params, ctxLen + 4 + n / 2);
          const extra: Record<string, number | string> = {
            "prefill tok/s": ctxLen / prefill,
            "dispatches/tok": (ctx.dispatches - d0) / n,
            "submits/tok": (ctx.submits - s0) / n,
            "new bind groups/tok": (ctx.bindGroupsCreated - g0) / n,
            "median tok/s": 1e3 / medianMs,
          };
          extra["min MB/tok"] = bytes / 1e6;
          if (o.copyGBs) extra["of copy floor"] = bytes / (o.copyGBs * 1e9) / (seconds / n);
          if (gpu.length) {
            extra["gpu ms/tok"] = (1e3 * gpu.reduce((a, b) => a + b, 0)) / gpu.length;
            if (o.copyGBs) extra["gpu of copy floor"] = (bytes / (o.copyGBs * 1e9)) / (gpu.reduce((a, b) => a + b, 0) / gpu.length);
          }
          extra.greedy = greedy.join(" ");
          results.push({
            section: "decode",
            name: `decode ${name}`,
            shape: `ctx ${ctxLen}`,
            ms: (seconds * 1e3) / n,
            rate: n / seconds,
            unit: "tok/s",
            iterations: n,
            timing: "wallclock",
            extra: { params, ...extra },
          });
        } finally {
          state.dispose();
        }
      }
    } finally {
      for (const p of model.parameters()) p.dispose();
      be.ctx.trim();
    }
  }
  return results;
}
