/** WGSL conv1d, selective scan and SSD kernels against ref on SwiftShader: ragged sizes, every optional input on and off. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { refKernels } from "../src/backend/ref/index.js";
import { Rng } from "../src/util/rng.js";
import { gpuBackend, compareKernel, input, output, randArray } from "./webgpu_helpers.js";
import { relErr } from "./helpers.js";

const rng = new Rng(21);
const TOL = 2e-5;

function uniformArray(n: number, lo: number, hi: number): Float32Array {
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

test("conv1d forward, backward and step: widths 1..4, bias and window state on and off", async () => {
  const be = await gpuBackend();
  // (the last two: the filter gradient's runs of rows cross sequences, and grow past 16 rows)
  for (const [B, T, D, W] of [[1, 1, 1, 1], [2, 7, 5, 4], [3, 2, 9, 3], [1, 5, 300, 2], [3, 37, 70, 4], [2, 2100, 3, 3]]) {
    for (const withBias of [false, true]) {
      for (const withState of [false, true]) {
        const d = { B, T, D, W };
        const x = randArray(B * T * D, rng);
        const w = randArray(D * W, rng);
        const bias = withBias ? input(randArray(D, rng)) : null;
        const s0 = withState ? randArray(B * (W - 1) * D, rng) : null;
        const errs = await compareKernel(be, "conv1dForward", [
          output(randArray(B * T * D, rng)), output(randArray(B * (W - 1) * D, rng)), input(x), input(w), bias, s0 ? input(s0) : null, d,
        ]);
        assert.ok(Math.max(...errs) < TOL, `conv1d fwd ${[B, T, D, W]} ${errs}`);
        const errsB = await compareKernel(be, "conv1dBackward", [
          output(randArray(B * T * D, rng)), output(randArray(D * W, rng)), withBias ? output(randArray(D, rng)) : null,
          withState ? output(randArray(B * (W - 1) * D, rng)) : null, input(randArray(B * T * D, rng)), input(x), input(w), s0 ? input(s0) : null, d,
        ]);
        assert.ok(Math.max(...errsB) < TOL, `conv1d bwd ${[B, T, D, W]} bias=${withBias} state=${withState}: ${errsB}`);
        // the step, plain and with the mixer's activation fused (decoding)
        for (const act of [undefined, withBias ? ("silu" as const) : ("softplus" as const)]) {
          const errsS = await compareKernel(be, "conv1dStep", [
            output(randArray(B * D, rng)), output(randArray(B * (W - 1) * D, rng)), input(randArray(B * D, rng)), input(w), bias, { ...d, act },
          ]);
          assert.ok(Math.max(...errsS) < TOL, `conv1d step ${[B, D, W]} ${act}: ${errsS}`);
        }
      }
    }
  }
});

/** Forward checkpoints from the ref kernel, the input of a backward comparison. */
function refCheckpoints(kernel: "selectiveScanForward" | "ssdForward", args: unknown[], ckptSize: number, ckptArg: number): Float32Array {
  const ckpt = new Float32Array(ckptSize);
  const a = args.map((x, i) => (i === ckptArg ? ckpt : x));
  (refKernels as unknown as Record<string, (...x: unknown[]) => void>)[kernel](...a);
  return ckpt;
}

test("selective scan forward, backward and step: ragged T over chunks, optional Dskip, z, dtBias, states", async () => {
  const be = await gpuBackend();
  const cases = [
    { B: 1, T: 1, D: 1, N: 1, chunk: 1 },
    { B: 2, T: 13, D: 5, N: 3, chunk: 4 },
    { B: 1, T: 70, D: 33, N: 16, chunk: 64 },
    { B: 2, T: 9, D: 3, N: 40, chunk: 9 },
    // N > 64: the backward sums (dB, dC) every 2 steps (128 states a channel, 2 channels a block)
    { B: 1, T: 11, D: 3, N: 100, chunk: 8 },
    // T >= BLOCK_MIN_T: the default plan is scan_lookback.ts, chunks of 64 (ragged last chunk
    // and group of U steps, N % 4 != 0)
    { B: 1, T: 1030, D: 6, N: 7, chunk: 100 },
    // T >= LOOKBACK_MID_T: chunks of 128 (CH256 with 8 steps a loop iteration from
    // LOOKBACK_LONG_T is the same kernel; the tile-plan test below runs other plans)
    { B: 1, T: 2050, D: 5, N: 7, chunk: 100 },
  ];
  let variant = 0;
  for (const c of cases) {
    for (const opt of [0, 1, 2, 3]) {
      const { B, T, D, N } = c;
      const all = opt === 3 || opt === 1;
      const withState = opt >= 2;
      const d = { ...c, deltaSoftplus: opt !== 2 };
      const u = randArray(B * T * D, rng);
      const dt = randArray(B * T * D, rng, 0.7);
      const A = uniformArray(D * N, -2, -0.1);
      const Bm = randArray(B * T * N, rng);
      const Cm = randArray(B * T * N, rng);
      const Dskip = all ? randArray(D, rng) : null;
      const z = all ? randArray(B * T * D, rng) : null;
      const bias = all || opt === 2 ? uniformArray(D, 0.5, 1.5) : null;
      const s0 = withState ? randArray(B * D * N, rng) : null;
      const K = Math.ceil(T / c.chunk);
      const fwd = [output(randArray(B * T * D, rng)), output(randArray(B * D * N, rng)), output(randArray(B * K * D * N, rng)),
        input(u), input(dt), input(A), input(Bm), input(Cm), Dskip && input(Dskip), z && input(z), bias && input(bias), s0 && input(s0), d];
      const errs = await compareKernel(be, "selectiveScanForward", fwd);
      assert.ok(Math.max(...errs) < TOL, `scan fwd ${JSON.stringify(d)} opt ${opt}: ${errs}`);
      const ckpt = refCheckpoints("selectiveScanForward", [new Float32Array(B * T * D), null, null, u, dt, A, Bm, Cm, Dskip, z, bias, s0, d], B * K * D * N, 2);
      const errsB = await compareKernel(be, "selectiveScanBackward", [
        output(randArray(B * T * D, rng)), output(randArray(B * T * D, rng)), output(randArray(D * N, rng)), output(randArray(B * T * N, rng)),
        output(randArray(B * T * N, rng)), Dskip && output(randArray(D, rng)), z && output(randArray(B * T * D, rng)), bias && output(randArray(D, rng)),
        variant++ % 2 === 0 ? output(randArray(B * D * N, rng)) : null,
        input(randArray(B * T * D, rng)), input(u), input(dt), input(A), input(Bm), input(Cm), Dskip && input(Dskip), z && input(z), bias && input(bias), input(ckpt), d,
      ]);
      assert.ok(Math.max(...errsB) < 1e-4, `scan bwd ${JSON.stringify(d)} opt ${opt}: ${errsB}`);
      const errsS = await compareKernel(be, "selectiveScanStep", [
        output(randArray(B * D, rng)), output(randArray(B * D * N, rng)), input(randArray(B * D, rng)), input(randArray(B * D, rng)), input(A),
        input(randArray(B * N, rng)), input(randArray(B * N, rng)), Dskip && input(Dskip), z && input(randArray(B * D, rng)), bias && input(bias), { ...d, T: 1 },
      ]);
      assert.ok(Math.max(...errsS) < TOL, `scan step ${JSON.stringify(d)}: ${errsS}`);
    }
  }
});

test("SSD forward, backward and step: groups, ragged chunks, dt limits, optional Dskip, dtBias, states", async () => {
  const be = await gpuBackend();
  const cases = [
    { B: 1, T: 1, H: 1, P: 1, N: 1, G: 1, chunk: 1 },
    { B: 2, T: 11, H: 4, P: 3, N: 5, G: 2, chunk: 4 },
    { B: 1, T: 40, H: 2, P: 8, N: 32, G: 1, chunk: 16 },
    { B: 1, T: 7, H: 3, P: 5, N: 64, G: 3, chunk: 8 },
    // scan_lookback.ts (the default from BLOCK_MIN_T) with shared steps per head and B/C groups:
    // chunks of 64 and (from LOOKBACK_MID_T) of 128
    { B: 1, T: 1027, H: 2, P: 3, N: 8, G: 2, chunk: 128 },
    { B: 1, T: 2051, H: 2, P: 3, N: 8, G: 2, chunk: 128 },
  ];
  let variant = 0;
  for (const c of cases) {
    for (const opt of [0, 1, 2]) {
      const { B, T, H, P, N, G } = c;
      const all = opt >= 1;
      const d = { ...c, dtSoftplus: opt !== 2, dtMin: opt === 1 ? 0.2 : 0, dtMax: opt === 1 ? 1.5 : Infinity };
      const x = randArray(B * T * H * P, rng);
      const dt = randArray(B * T * H, rng);
      const A = uniformArray(H, -2, -0.1);
      const Bm = randArray(B * T * G * N, rng);
      const Cm = randArray(B * T * G * N, rng);
      const Dskip = all ? randArray(H, rng) : null;
      const bias = all ? uniformArray(H, 0.5, 1.5) : null;
      const s0 = opt !== 0 ? randArray(B * H * P * N, rng) : null;
      const K = Math.ceil(T / c.chunk);
      const S = B * H * P * N;
      const errs = await compareKernel(be, "ssdForward", [
        output(randArray(B * T * H * P, rng)), output(randArray(S, rng)), output(randArray(B * K * H * P * N, rng)),
        input(x), input(dt), input(A), input(Bm), input(Cm), Dskip && input(Dskip), bias && input(bias), s0 && input(s0), d,
      ]);
      assert.ok(Math.max(...errs) < TOL, `ssd fwd ${JSON.stringify(d)}: ${errs}`);
      const ckpt = refCheckpoints("ssdForward", [new Float32Array(B * T * H * P), null, null, x, dt, A, Bm, Cm, Dskip, bias, s0, d], B * K * S / B, 2);
      const errsB = await compareKernel(be, "ssdBackward", [
        output(randArray(B * T * H * P, rng)), output(randArray(B * T * H, rng)), output(randArray(H, rng)), output(randArray(B * T * G * N, rng)),
        output(randArray(B * T * G * N, rng)), Dskip && output(randArray(H, rng)), bias && output(randArray(H, rng)),
        variant++ % 2 === 0 ? output(randArray(S, rng)) : null,
        input(randArray(B * T * H * P, rng)), input(x), input(dt), input(A), input(Bm), input(Cm), Dskip && input(Dskip), bias && input(bias), input(ckpt), d,
      ]);
      assert.ok(Math.max(...errsB) < 1e-4, `ssd bwd ${JSON.stringify(d)}: ${errsB}`);
      const errsS = await compareKernel(be, "ssdStep", [
        output(randArray(B * H * P, rng)), output(randArray(S, rng)), input(randArray(B * H * P, rng)), input(randArray(B * H, rng)), input(A),
        input(randArray(B * G * N, rng)), input(randArray(B * G * N, rng)), Dskip && input(Dskip), bias && input(bias), { ...d, T: 1 },
      ]);
      assert.ok(Math.max(...errsS) < TOL, `ssd step ${JSON.stringify(d)}: ${errsS}`);
    }
  }
});

/**
 * Inputs of a selective scan with every optional input on (u, dt, A < 0, B, C, Dskip, z, dtBias,
 * an initial state) and ref's outputs (y, final state, checkpoints every `chunk` steps).
 */
function scanCase(B: number, T: number, D: number, N: number, chunk: number): { args: Float32Array[]; want: Float32Array[] } {
  const args = [
    randArray(B * T * D, rng), randArray(B * T * D, rng, 0.7), uniformArray(D * N, -2, -0.1), randArray(B * T * N, rng), randArray(B * T * N, rng),
    randArray(D, rng), randArray(B * T * D, rng), uniformArray(D, 0.5, 1.5), randArray(B * D * N, rng),
  ];
  const want = [new Float32Array(B * T * D), new Float32Array(B * D * N), new Float32Array(B * Math.ceil(T / chunk) * D * N)];
  const [u, dt, A, Bm, Cm, Dskip, z, dtBias, s0] = args;
  refKernels.selectiveScanForward(want[0], want[1], want[2], u, dt, A, Bm, Cm, Dskip, z, dtBias, s0, { B, T, D, N, chunk, deltaSoftplus: true });
  return { args, want };
}

/** Each forward plan on each selective scan case (every option on) against ref: outputs, final state, checkpoints. */
async function checkForwardPlans(
  be: Awaited<ReturnType<typeof gpuBackend>>,
  core: import("../src/backend/webgpu/scan_core.js").ScanCore,
  plans: import("../src/backend/webgpu/scan_core.js").ScanPlan[],
  cases: { B: number; T: number; D: number; N: number; chunk: number }[],
): Promise<void> {
  for (const plan of plans) {
    for (const c of cases) {
      const { B, T, D, N, chunk } = c;
      const { args, want } = scanCase(B, T, D, N, chunk);
      const ins = args.map((a) => be.upload("f32", a));
      const outs = want.map((w) => be.upload("f32", new Float32Array(w.length).fill(Number.NaN)));
      const [u, dt, A, Bm, Cm, Dskip, z, dtBias, s0] = ins;
      core.forward(outs[0], outs[1], outs[2], { u, dt, A, Bmat: Bm, Cmat: Cm, Dskip, z, dtBias }, s0, {
        B, T, Dc: D, N, chunk, R: 1, G: 1, aPerState: true, softplus: true, clamp: false, dtMin: 0, dtMax: 0,
      }, "sscan", plan);
      for (let i = 0; i < 3; i++) {
        const got = (await be.read(outs[i], "f32", want[i].length)) as Float32Array;
        const e = relErr(Float64Array.from(got), Float64Array.from(want[i]));
        assert.ok(e < TOL, `plan ${JSON.stringify(plan)} ${JSON.stringify(c)} output ${i}: ${e}`);
      }
      for (const h of [...ins, ...outs]) be.release(h);
    }
  }
}

test("forward scan tile plans: lanes 1/2/4, steps per lane, channels per workgroup, state slabs, tiles that split chunks; block plans over many ragged tiles; chunk and look-back plans", async () => {
  const be = await gpuBackend();
  const { ScanCore } = await import("../src/backend/webgpu/scan_core.js");
  const core = new ScanCore(be.ctx);
  const sg = be.ctx.acquired.subgroupMinSize;
  const plans = [
    { L: 1, I: 8, DB: 4, NS: 16 },
    { L: 1, I: 3, DB: 5, NS: 4 },
    ...(sg >= 2 ? [{ L: 2, I: 4, DB: 8, NS: 8 }] : []),
    ...(sg >= 4 ? [{ L: 4, I: 8, DB: 4, NS: 16 }, { L: 4, I: 2, DB: 3, NS: 4 }] : []),
    // scan_block.ts: tiles of W * L * I steps (16, 12, 36, 64) that divide no T below, and
    // more groups than lanes; N = 40 takes the quad loop, N = 6 the scalar B/C reads
    { kind: "block" as const, L: 1, I: 4, DB: 3, W: 4 },
    { kind: "block" as const, L: 1, I: 3, DB: 1, W: 4 },
    ...(sg >= 2 ? [{ kind: "block" as const, L: 2, I: 2, DB: 5, W: 3 }] : []),
    ...(sg >= 4 ? [{ kind: "block" as const, L: 4, I: 3, DB: 2, W: 3 }, { kind: "block" as const, L: 4, I: 4, DB: 1, W: 4 }] : []),
    // quads sharing a barrier: all four, and groups of three (the last one short)
    { kind: "block" as const, L: Math.min(4, Math.max(1, sg)), I: 2, DB: 2, W: 3, Q: 4 },
    { kind: "block" as const, L: 1, I: 2, DB: 3, W: 5, Q: 3 },
    // the long-sequence default's shape (4 steps a lane, two quads a barrier), smaller
    { kind: "block" as const, L: Math.min(4, Math.max(1, sg)), I: 4, DB: 2, W: 4, Q: 2 },
    // scan_chunks.ts: chunks of 7 (not dividing T or the checkpoint interval) and 64 steps
    { kind: "chunks" as const, CH: 7, WD: 4 },
    { kind: "chunks" as const, CH: 64, WD: 3 },
    // scan_lookback.ts: one dispatch, carries through the look-back; chunks of 1, 7 and 5 (many
    // chunks, carries every 4th) and 64; groups of 2, 4 and 8 steps (a last group cut short);
    // polynomial exp2 for one and for all state quads of walk 1
    { kind: "lookback" as const, CH: 1, WD: 8 },
    { kind: "lookback" as const, CH: 7, WD: 4, U: 4 },
    { kind: "lookback" as const, CH: 5, WD: 8, PX: 1, U: 2 },
    { kind: "lookback" as const, CH: 64, WD: 3, PX: 16, U: 8 },
  ];
  const cases = [
    { B: 2, T: 100, D: 7, N: 16, chunk: 10 },
    { B: 1, T: 77, D: 9, N: 6, chunk: 64 },
    { B: 1, T: 33, D: 4, N: 40, chunk: 8 },
    { B: 1, T: 301, D: 5, N: 16, chunk: 64 },
  ];
  await checkForwardPlans(be, core, plans, cases);
});

test("warp-specialized scan forward: 1, 2 and 4 states a walker, tiles dividing the checkpoint interval or not, stagers with several elements or idle ones, SSD heads and groups", async () => {
  const be = await gpuBackend();
  const { ScanCore } = await import("../src/backend/webgpu/scan_core.js");
  const core = new ScanCore(be.ctx);
  const plans = [
    // tiles of 8 dividing chunk 64 (one checkpoint test a tile) and of 12 that do not; more
    // elements than stagers (several a stager, the last short) and fewer (idle stagers)
    { kind: "specialized" as const, CW: 4, S: 2 as const, TT: 8, SW: 8 },
    { kind: "specialized" as const, CW: 3, S: 1 as const, TT: 12, SW: 40 },
    { kind: "specialized" as const, CW: 2, S: 4 as const, TT: 4, SW: 5 },
    { kind: "specialized" as const, CW: 1, S: 2 as const, TT: 16, SW: 64 },
    // loads a tile ahead
    { kind: "specialized" as const, CW: 4, S: 2 as const, TT: 8, SW: 32, PF: 1 },
    { kind: "specialized" as const, CW: 2, S: 4 as const, TT: 8, SW: 32, PF: 1 },
    // two and three tiles ahead (trips of 6 and 4 tiles: most of a short sequence's last trip dead)
    { kind: "specialized" as const, CW: 3, S: 2 as const, TT: 4, SW: 16, PF: 2 },
    { kind: "specialized" as const, CW: 2, S: 4 as const, TT: 8, SW: 32, PF: 3 },
  ];
  const cases = [
    { B: 2, T: 100, D: 7, N: 16, chunk: 10 },
    { B: 1, T: 77, D: 9, N: 6, chunk: 64 },
    { B: 1, T: 33, D: 4, N: 40, chunk: 8 },
    { B: 1, T: 301, D: 5, N: 16, chunk: 64 },
    { B: 2, T: 37, D: 5, N: 3, chunk: 6 },
  ];
  await checkForwardPlans(be, core, plans, cases);
  // SSD: one step and A per head of P channels, B/C per group of heads, dt limits; a workgroup's
  // channels never straddle a group (CW 4 of 6 channels a group: a short last block)
  const { ssdShape } = await import("../src/backend/webgpu/scan.js");
  for (const c of [{ B: 2, T: 45, H: 4, P: 3, N: 8, G: 2, chunk: 16 }, { B: 1, T: 19, H: 3, P: 5, N: 5, G: 3, chunk: 4 }]) {
    const { B, T, H, P, N, G } = c;
    const d = { ...c, dtSoftplus: true, dtMin: 0.2, dtMax: 1.5 };
    const K = Math.ceil(T / c.chunk);
    const args = [
      randArray(B * T * H * P, rng), randArray(B * T * H, rng), uniformArray(H, -2, -0.1), randArray(B * T * G * N, rng), randArray(B * T * G * N, rng),
      randArray(H, rng), uniformArray(H, 0.5, 1.5), randArray(B * H * P * N, rng),
    ];
    const want = [new Float32Array(B * T * H * P), new Float32Array(B * H * P * N), new Float32Array(B * K * H * P * N)];
    const [x, dt, A, Bm, Cm, Dskip, bias, s0] = args;
    refKernels.ssdForward(want[0], want[1], want[2], x, dt, A, Bm, Cm, Dskip, bias, s0, d);
    for (const plan of plans.slice(0, 2)) {
      const ins = args.map((a) => be.upload("f32", a));
      const outs = want.map((w) => be.upload("f32", new Float32Array(w.length).fill(Number.NaN)));
      const [gx, gdt, gA, gB, gC, gD, gbias, gs0] = ins;
      core.forward(outs[0], outs[1], outs[2], { u: gx, dt: gdt, A: gA, Bmat: gB, Cmat: gC, Dskip: gD, z: null, dtBias: gbias }, gs0, ssdShape(d), "ssd", plan);
      for (let i = 0; i < 3; i++) {
        const got = (await be.read(outs[i], "f32", want[i].length)) as Float32Array;
        const e = relErr(Float64Array.from(got), Float64Array.from(want[i]));
        assert.ok(e < TOL, `SSD plan ${JSON.stringify(plan)} ${JSON.stringify(c)} output ${i}: ${e}`);
      }
      for (const h of [...ins, ...outs]) be.release(h);
    }
  }
});

test("look-back scan: what each chunk waits for is fixed, so two runs agree bit for bit (and with ref)", async () => {
  const be = await gpuBackend();
  const { ScanCore } = await import("../src/backend/webgpu/scan_core.js");
  const core = new ScanCore(be.ctx);
  const [B, T, D, N, chunk] = [2, 300, 33, 16, 16];
  const { args, want } = scanCase(B, T, D, N, chunk);
  const ins = args.map((a) => be.upload("f32", a));
  const [u, dt, A, Bm, Cm, Dskip, z, dtBias, s0] = ins;
  const runs: Float32Array[][] = [];
  for (let r = 0; r < 2; r++) {
    const outs = want.map((w) => be.upload("f32", new Float32Array(w.length).fill(Number.NaN)));
    // chunks of 2 steps: 150 chunks a channel, finishing in an order that varies run to run
    core.forward(outs[0], outs[1], outs[2], { u, dt, A, Bmat: Bm, Cmat: Cm, Dskip, z, dtBias }, s0, {
      B, T, Dc: D, N, chunk, R: 1, G: 1, aPerState: true, softplus: true, clamp: false, dtMin: 0, dtMax: 0,
    }, "sscan", { kind: "lookback", CH: 2, WD: 16 });
    runs.push(await Promise.all(outs.map(async (o, i) => (await be.read(o, "f32", want[i].length)) as Float32Array)));
    for (const h of outs) be.release(h);
  }
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(runs[1][i], runs[0][i], `output ${i} differs between runs`);
    const e = relErr(Float64Array.from(runs[0][i]), Float64Array.from(want[i]));
    assert.ok(e < TOL, `output ${i}: ${e}`);
  }
  for (const h of ins) be.release(h);
});
