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
const ROUNDS = 5;
const WARMUP_STEPS = 256;

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
    // warm-up on a scratch state, a chunk and then single tokens: JIT compilation (V8 optimises a
    // function after some hundreds of calls) and first-touch allocation stay out of the timings
    const scratch = model.allocateState(1, WARMUP_STEPS + o.chunk + 1);
    await feed(be, model, scratch, Array.from({ length: o.chunk }, tok));
    for (let i = 0; i < WARMUP_STEPS; i++) await feed(be, model, scratch, [tok()]);
    scratch.dispose();
    // one state per position, each prefilled with its own tokens; the timed rounds then visit
    // the positions in turn, so a slow spell of the machine (a 2-core VM has them) falls on all
    // positions alike instead of on whichever one was being measured
    const states: InferenceState[] = [];
    const bytes: { kvCache: number; recurrent: number }[] = [];
    const t0 = performance.now();
    for (const p of o.positions) {
      const state = model.allocateState(1, p + SETTLE_STEPS + ROUNDS * o.steps + 1);
      while (state.position < p) await feed(be, model, state, Array.from({ length: Math.min(o.chunk, p - state.position) }, tok));
      bytes.push(state.bytes()); // held at position p, before the timed steps add to it
      for (let i = 0; i < SETTLE_STEPS; i++) await feed(be, model, state, [tok()]);
      states.push(state);
    }
    const prefillSeconds = (performance.now() - t0) / 1000;
    // a step takes a fraction of a millisecond, so one descheduled worker moves it several-fold:
    // each round times `steps` consecutive steps as a whole, and the fastest round is the cost
    const best = o.positions.map(() => Infinity);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < states.length; i++) {
        const s0 = performance.now();
        for (let j = 0; j < o.steps; j++) await feed(be, model, states[i], [tok()]);
        best[i] = Math.min(best[i], (performance.now() - s0) / o.steps);
      }
    }
    const points: DecodePoint[] = o.positions.map((position, i) => ({ position, msPerToken: best[i], kvCacheBytes: bytes[i].kvCache, recurrentBytes: bytes[i].recurrent }));
    for (const pt of points) o.log?.(`decode ${a.id} @${pt.position}: ${pt.msPerToken.toFixed(2)} ms/token, KV ${pt.kvCacheBytes} B, state ${pt.recurrentBytes} B`);
    for (const st of states) st.dispose();
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
