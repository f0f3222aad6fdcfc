import { CpuBackend } from "./src/backend/cpu/backend.js";
import { setDefaultBackend } from "./src/backend/registry.js";
import { buildModel } from "./src/models/registry.js";
import { RawConfig } from "./src/io/config.js";
import { ModuleContext } from "./src/nn/module.js";
import { AdamW } from "./src/train/optimizer.js";
import { DECODE_MODELS } from "./src/bench/gpu/decode.js";
import { trainBatch, trainStep, TRAIN_SHAPE } from "./src/bench/gpu/train.js";
const name = process.argv[2] ?? "mamba";
const be = await CpuBackend.create({ threads: 2 });
setDefaultBackend(be);
const model = buildModel(new RawConfig(`bench ${name}`, DECODE_MODELS[name]), ModuleContext.seeded(be, 0));
const s = TRAIN_SHAPE;
const opt = new AdamW(be, model.namedParameters(), { lr: s.lr, weightDecay: s.weightDecay, clipNorm: s.clipNorm });
const batch = trainBatch(s.batch, s.T, model.config.V);
for (let i = 0; i < 3; i++) {
  const t0 = performance.now();
  const r = await trainStep(model, opt, s, batch);
  const names = opt.params.map(([n]) => n);
  console.log(JSON.stringify({ step: i + 1, loss: r.loss, gradNorm: r.gradNorm, sec: (performance.now() - t0) / 1000, norms: i === 0 ? Object.fromEntries(names.map((n, j) => [n, r.norms[j]])) : undefined }));
}
