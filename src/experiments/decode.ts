/**
 * Claim 2: the cost of decoding one token at position p, and the bytes of inference state held
 * there. Attention reads a KV cache of p rows; Mamba and RWKV update a fixed-size state. The
 * state is brought to each position by prefilling real tokens in chunks (the measured model
 * really holds p tokens of context), then a few single-token steps are timed.
 */
import type { Backend } from "../backend/backend.js";
import { tidyAsync } from "../tensor/scope.js";
import { noGradAsync } from "../autograd/tape.js";
import { toFloat32 } from "../backend/alloc.js";
import { lastPosition } from "../generate/generate.js";
import type { CausalLM } from "../models/causal_lm.js";
import type { InferenceState } from "../nn/state.js";
import type { PresetOptions } from "../models/presets.js";
import { Rng } from "../util/rng.js";
import { logLogSlope } from "./measure.js";
import { buildArch, type Arch } from "./zoo.js";

export interface DecodePoint {
  position: number;
  msPerToken: number;
  kvCacheBytes: number;
  recurrentBytes: number;
}

export interface DecodeSeries {
  arch: string;
  label: string;
  points: DecodePoint[];
  /** slope of log(ms/token) and log(state bytes) against log(position) over the largest positions */
  timeSlope: number;
  bytesSlope: number;
  prefillSeconds: number;
}

export interface DecodeOptions {
  positions: number[];
  /** tokens timed at each position */
  steps: number;
  /** prefill chunk length */
  chunk: number;
  model: PresetOptions;
  seed: number;
  log?: (line: string) => void;
}

const SETTLE_STEPS = 4;

async function feed(be: Backend, model: CausalLM, state: InferenceState, ids: number[]): Promise<void> {
  await noGradAsync(() =>
    tidyAsync(async () => {
      const { logits } = model.forward(model.tokens(ids, 1, ids.length, state.position), { state });
      await toFloat32(lastPosition(logits)); // the last row is what decoding reads back
      await be.sync();
    }),
  );
}

export async function runDecode(be: Backend, archs: Arch[], o: DecodeOptions): Promise<DecodeSeries[]> {
  const out: DecodeSeries[] = [];
  for (const a of archs) {
    const model = buildArch(be, a, o.model, o.seed);
    const rng = new Rng(o.seed);
    const tok = () => rng.int(0, model.config.V);
    const last = o.positions.at(-1)!;
    // warm-up on a scratch state: JIT compilation and first-touch allocation stay out of the timings
    const scratch = model.allocateState(1, 16);
    for (let i = 0; i < 4; i++) await feed(be, model, scratch, [tok()]);
    scratch.dispose();
    const state = model.allocateState(1, last + SETTLE_STEPS + o.steps + 1);
    const points: DecodePoint[] = [];
    let prefillSeconds = 0;
    for (const p of o.positions) {
      const t0 = performance.now();
      while (state.position < p) {
        const n = Math.min(o.chunk, p - state.position);
        await feed(be, model, state, Array.from({ length: n }, tok));
      }
      prefillSeconds += (performance.now() - t0) / 1000;
      const bytes = state.bytes(); // held at position p, before the timed steps add to it
      // a few untimed steps first: the prefill's freed buffers and the first single-token
      // calls at this size (allocation, collection) would otherwise land on the timed ones
      for (let i = 0; i < SETTLE_STEPS; i++) await feed(be, model, state, [tok()]);
      const times: number[] = [];
      for (let i = 0; i < o.steps; i++) {
        const s0 = performance.now();
        await feed(be, model, state, [tok()]);
        times.push(performance.now() - s0);
      }
      times.sort((x, y) => x - y);
      points.push({ position: p, msPerToken: times[Math.floor(times.length / 2)], kvCacheBytes: bytes.kvCache, recurrentBytes: bytes.recurrent });
      o.log?.(`decode ${a.id} @${p}: ${times[Math.floor(times.length / 2)].toFixed(2)} ms/token, KV ${bytes.kvCache} B, state ${bytes.recurrent} B`);
    }
    state.dispose();
    const tail = points.slice(-3);
    out.push({
      arch: a.id,
      label: a.label,
      points,
      timeSlope: logLogSlope(tail.map((p) => p.position), tail.map((p) => p.msPerToken)),
      bytesSlope: logLogSlope(tail.map((p) => p.position), tail.map((p) => p.kvCacheBytes + p.recurrentBytes)),
      prefillSeconds,
    });
    for (const t of model.parameters()) t.dispose();
  }
  return out;
}
