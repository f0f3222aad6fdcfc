/** The native model: any layer stack from one JSON config. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { RawConfig } from "../src/io/config.js";
import { buildModel } from "../src/models/registry.js";
import { ModuleContext } from "../src/nn/module.js";
import { noGrad } from "../src/autograd/tape.js";
import { tidy } from "../src/tensor/scope.js";
import { toArraySync } from "../src/backend/alloc.js";
import { SeqlabError } from "../src/util/errors.js";
import { maxAbsDiff, ref32 } from "./helpers.js";

const native = {
  model_type: "seqlab",
  vocab_size: 40,
  hidden_size: 24,
  layers: ["attention+mlp", "attention+mlp"],
  attention: { num_heads: 6, num_kv_heads: 2, rope_theta: 500 },
  mlp: { intermediate_size: 40 },
  norm_eps: 1e-6,
};

test("a native attention+mlp stack computes exactly what Llama computes with the same weights", () => {
  const a = buildModel(new RawConfig("native", native), ModuleContext.seeded(ref32, 1));
  const llama = buildModel(
    new RawConfig("llama", {
      model_type: "llama",
      vocab_size: 40,
      hidden_size: 24,
      intermediate_size: 40,
      num_hidden_layers: 2,
      num_attention_heads: 6,
      num_key_value_heads: 2,
      rope_theta: 500,
      rms_norm_eps: 1e-6,
      tie_word_embeddings: true,
    }),
    ModuleContext.forLoading(ref32),
  );
  const rename = (n: string) =>
    n.replace("mixer_norm", "input_layernorm").replace("ffn_norm", "post_attention_layernorm").replace(".mixer.", ".self_attn.").replace(".ffn.", ".mlp.");
  const src = new Map(a.namedParameters().map(([n, t]) => [rename(n), t]));
  for (const [n, t] of llama.namedParameters()) ref32.write(t.handle as Float32Array, "f32", toArraySync(src.get(n)!));
  const ids = Array.from({ length: 13 }, (_, i) => (i * 11) % 40);
  const run = (m: typeof a) => noGrad(() => tidy(() => toArraySync(m.forward(m.tokens(ids, 1, 13)).logits)));
  assert.ok(maxAbsDiff(run(a), run(llama)) < 1e-6);
});

test("native stack: unknown parts and bad sections are named", () => {
  const bad = (json: Record<string, unknown>, pattern: RegExp) =>
    assert.throws(() => buildModel(new RawConfig("cfg.json", json), ModuleContext.seeded(ref32, 1)), (e) => e instanceof SeqlabError && pattern.test(e.message));
  bad({ ...native, layers: ["transformer"] }, /layer 0: mixer "transformer" is unknown \(known: attention/);
  bad({ ...native, layers: ["attention+gelu"] }, /layer 0: ffn "gelu" is unknown \(known: none, mlp/);
  bad({ ...native, layers: [] }, /"layers" must list at least one layer/);
  bad({ ...native, attention: { num_heads: 5 } }, /hidden_size 24 must be a multiple of num_heads 5/);
});
