/**
 * GGUF: the writer and reader round-trip every value type and tensor; Llama and Mamba exports
 * carry llama.cpp's names, layouts and metadata (checked tensor by tensor against the
 * safetensors they came from); and, where node-llama-cpp's prebuilt binaries load, llama.cpp
 * itself decodes an exported Llama greedily to the same tokens as seqlab.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { GgufFile, writeGguf, arr, bool, f32, str, u32, type GgufValue } from "../src/io/gguf.js";
import { exportGguf } from "../src/export/gguf_export.js";
import { CheckpointWeights } from "../src/io/weights.js";
import { loadModel } from "../src/models/load.js";
import { generate } from "../src/generate/generate.js";
import { decodeHalf } from "../src/util/half.js";
import { SeqlabError } from "../src/util/errors.js";
import { HF_FIXTURES, NEEDS_SHARED, ref32, ROOT, VARIANT_FIXTURES } from "./helpers.js";
import { tinyTokenizerJson, writeTinyChatModel } from "./support/tiny_models.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-gguf-"));

test("GGUF v3 round trip: every value type, arrays, F32 and F16 tensors at aligned offsets", () => {
  const file = path.join(tmp, "roundtrip.gguf");
  const meta: [string, GgufValue][] = [
    ["general.architecture", str("test")],
    ["u8", { type: "uint8", value: 200 }],
    ["i8", { type: "int8", value: -100 }],
    ["u16", { type: "uint16", value: 60000 }],
    ["i16", { type: "int16", value: -30000 }],
    ["u32", u32(4000000000)],
    ["i32", { type: "int32", value: -2000000000 }],
    ["f32", f32(0.5)],
    ["bool", bool(true)],
    ["str", str("héllo ✓")],
    ["u64", { type: "uint64", value: 2n ** 40n }],
    ["i64", { type: "int64", value: -(2n ** 40n) }],
    ["f64", { type: "float64", value: Math.PI }],
    ["strings", arr("string", ["a", "", "▁b"])],
    ["floats", arr("float32", [1.5, -2])],
    ["ints", arr("int32", [1, -2, 3])],
    ["empty", arr("int32", [])],
  ];
  const a = Float32Array.from({ length: 3 * 5 }, (_, i) => i - 7.25);
  const b = Uint16Array.from({ length: 7 }, (_, i) => 0x3c00 + i); // f16 bits
  const c = Float32Array.from([0.1, 0.2, 0.3]);
  writeGguf(file, meta, [
    { name: "tensor.a", type: "F32", shape: [3, 5], data: () => a },
    { name: "b", type: "F16", shape: [7], data: () => b },
    { name: "c.converted", type: "F16", shape: [1, 3], data: () => c },
  ]);
  const g = new GgufFile(file);
  assert.equal(g.version, 3);
  assert.equal(g.metadata.size, meta.length);
  for (const [k, v] of meta) {
    const got = g.metadata.get(k)!;
    assert.equal(got.type, v.type, k);
    if (v.type === "float32") assert.equal(got.value, Math.fround(v.value as number));
    else assert.deepEqual(got.value, v.value, k);
    if (v.type === "array") assert.equal((got as { itemType: string }).itemType, v.itemType);
  }
  assert.deepEqual(g.tensors.get("tensor.a")!.shape, [3, 5]);
  assert.deepEqual(g.readTensor("tensor.a"), a);
  assert.deepEqual(g.readTensor("b"), b);
  assert.deepEqual(Array.from(decodeHalf(g.readTensor("c.converted") as Uint16Array, "f16")).map((x) => +x.toFixed(3)), [0.1, 0.2, 0.3]);
  for (const t of g.tensors.values()) assert.equal(t.begin % 32, 0, `${t.name} aligned`);
  // ne is stored innermost first: the raw dims of "tensor.a" in the file are [5, 3]
  const raw = fs.readFileSync(file);
  const at = raw.indexOf(Buffer.from("tensor.a", "utf8")) + 8;
  assert.equal(raw.readUInt32LE(at), 2);
  assert.deepEqual([Number(raw.readBigUInt64LE(at + 4)), Number(raw.readBigUInt64LE(at + 12))], [5, 3]);
});

test("the GGUF reader refuses files that are not GGUF, or cut short", () => {
  const f = path.join(tmp, "bad.gguf");
  fs.writeFileSync(f, "not a gguf file at all, clearly");
  assert.throws(() => new GgufFile(f), (e) => e instanceof SeqlabError && /bad\.gguf: not a GGUF file/.test(e.message));
  const good = path.join(tmp, "roundtrip.gguf");
  fs.writeFileSync(f, fs.readFileSync(good).subarray(0, 200));
  assert.throws(() => new GgufFile(f), (e) => e instanceof SeqlabError && /bad\.gguf: truncated at byte \d+/.test(e.message));
});

/** HF rotate-half rows -> interleaved pairs, undone: the permuted GGUF rows must map back exactly. */
function unpermute(x: Float32Array, heads: number, K: number, cols: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let h = 0; h < heads; h++)
    for (let i = 0; i < K / 2; i++)
      for (let half = 0; half < 2; half++) out.set(x.subarray((h * K + 2 * i + half) * cols, (h * K + 2 * i + half + 1) * cols), (h * K + half * (K / 2) + i) * cols);
  return out;
}

test("Llama export: llama.* metadata, blk.N names, q/k permuted, every tensor equal to its source", () => {
  const dir = path.join(VARIANT_FIXTURES, "llama_rope_llama3");
  const out = path.join(tmp, "llama3.gguf");
  const r = exportGguf(dir, out, "f32");
  const g = new GgufFile(out);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const [H, G, K, C] = [cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads, cfg.hidden_size];
  assert.equal(g.get("general.architecture"), "llama");
  assert.equal(g.get("general.file_type"), 0);
  assert.equal(g.get("llama.block_count"), cfg.num_hidden_layers);
  assert.equal(g.get("llama.embedding_length"), C);
  assert.equal(g.get("llama.feed_forward_length"), cfg.intermediate_size);
  assert.equal(g.get("llama.attention.head_count"), H);
  assert.equal(g.get("llama.attention.head_count_kv"), G);
  assert.equal(g.get("llama.rope.dimension_count"), K);
  assert.equal(g.get("llama.attention.layer_norm_rms_epsilon"), Math.fround(cfg.rms_norm_eps));
  assert.equal((g.get("tokenizer.ggml.tokens") as string[]).length, cfg.vocab_size);
  assert.equal(g.get("tokenizer.ggml.model"), "llama");
  assert.ok(g.tensors.has("rope_freqs.weight"), "llama3 scaling becomes rope_freqs");
  const w = CheckpointWeights.open(dir);
  const names: [string, string, number][] = [
    ["model.embed_tokens.weight", "token_embd.weight", 0],
    ["model.norm.weight", "output_norm.weight", 0],
  ];
  if (!cfg.tie_word_embeddings) names.push(["lm_head.weight", "output.weight", 0]);
  for (let i = 0; i < cfg.num_hidden_layers; i++) {
    names.push(
      [`model.layers.${i}.input_layernorm.weight`, `blk.${i}.attn_norm.weight`, 0],
      [`model.layers.${i}.self_attn.q_proj.weight`, `blk.${i}.attn_q.weight`, H],
      [`model.layers.${i}.self_attn.k_proj.weight`, `blk.${i}.attn_k.weight`, G],
      [`model.layers.${i}.self_attn.v_proj.weight`, `blk.${i}.attn_v.weight`, 0],
      [`model.layers.${i}.self_attn.o_proj.weight`, `blk.${i}.attn_output.weight`, 0],
      [`model.layers.${i}.post_attention_layernorm.weight`, `blk.${i}.ffn_norm.weight`, 0],
      [`model.layers.${i}.mlp.gate_proj.weight`, `blk.${i}.ffn_gate.weight`, 0],
      [`model.layers.${i}.mlp.up_proj.weight`, `blk.${i}.ffn_up.weight`, 0],
      [`model.layers.${i}.mlp.down_proj.weight`, `blk.${i}.ffn_down.weight`, 0],
    );
  }
  assert.equal(r.tensors, names.length + 1);
  for (const [hf, gg, heads] of names) {
    const t = g.tensors.get(gg)!;
    assert.deepEqual(t.shape, w.info(hf).shape, gg);
    const got = g.readTensor(gg) as Float32Array;
    assert.deepEqual(heads ? unpermute(got, heads, K, C) : got, w.readF32(hf), gg);
    if (heads) assert.notDeepEqual(got, w.readF32(hf), `${gg} is permuted`);
  }
  w.close();
});

test("Llama export with a tokenizer.json: the byte-level BPE becomes tokenizer.ggml gpt2 tokens and merges; f16 matrices", () => {
  const dir = path.join(tmp, "tiny-chat");
  writeTinyChatModel(dir, 2);
  const out = path.join(tmp, "tiny-chat.gguf");
  exportGguf(dir, out, "f16");
  const g = new GgufFile(out);
  const { json, vocab } = tinyTokenizerJson();
  assert.equal(g.get("tokenizer.ggml.model"), "gpt2");
  assert.equal(g.get("tokenizer.ggml.pre"), "gpt-2");
  const tokens = g.get("tokenizer.ggml.tokens") as string[];
  assert.equal(tokens.length, 288, "padded to the embedding rows");
  for (const [t, id] of vocab) assert.equal(tokens[id], t);
  assert.equal(tokens[287], "[PAD287]");
  const types = g.get("tokenizer.ggml.token_type") as number[];
  assert.equal(types[vocab.get("<s>")!], 3, "special tokens are control tokens");
  assert.equal(types[104], 1);
  assert.equal(types[287], 5);
  assert.deepEqual(g.get("tokenizer.ggml.merges"), (json.model as { merges: string[] }).merges);
  assert.equal(g.get("tokenizer.ggml.bos_token_id"), vocab.get("<s>"));
  assert.equal(g.get("tokenizer.ggml.eos_token_id"), vocab.get("</s>"));
  assert.equal(g.get("general.file_type"), 1);
  assert.equal(g.tensors.get("blk.0.attn_q.weight")!.type, "F16");
  assert.equal(g.tensors.get("blk.0.attn_norm.weight")!.type, "F32");
});

test("Mamba export: mamba.* metadata, ssm_* tensors, conv squeezed, A = -exp(A_log)", { skip: NEEDS_SHARED }, () => {
  const dir = path.join(HF_FIXTURES, "mamba");
  const out = path.join(tmp, "mamba.gguf");
  exportGguf(dir, out, "auto");
  const g = new GgufFile(out);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
  const C = cfg.hidden_size;
  assert.equal(g.get("general.architecture"), "mamba");
  assert.equal(g.get("mamba.embedding_length"), C);
  assert.equal(g.get("mamba.block_count"), cfg.num_hidden_layers);
  assert.equal(g.get("mamba.ssm.conv_kernel"), cfg.conv_kernel);
  assert.equal(g.get("mamba.ssm.inner_size"), cfg.intermediate_size);
  assert.equal(g.get("mamba.ssm.state_size"), cfg.state_size);
  assert.equal(g.get("mamba.ssm.time_step_rank"), cfg.time_step_rank === "auto" ? Math.ceil(C / 16) : cfg.time_step_rank);
  assert.equal(g.get("mamba.context_length"), 2 ** 20);
  assert.equal(g.get("mamba.attention.head_count"), 0);
  const w = CheckpointWeights.open(dir);
  const A = w.readF32("backbone.layers.1.mixer.A_log");
  const ssmA = g.readTensor("blk.1.ssm_a") as Float32Array;
  assert.deepEqual(g.tensors.get("blk.1.ssm_a")!.shape, w.info("backbone.layers.1.mixer.A_log").shape);
  ssmA.forEach((a, i) => assert.equal(a, Math.fround(-Math.exp(A[i]))));
  const conv = w.info("backbone.layers.0.mixer.conv1d.weight").shape;
  assert.deepEqual(g.tensors.get("blk.0.ssm_conv1d.weight")!.shape, [conv[0], conv[2]]);
  assert.deepEqual(g.readTensor("blk.0.ssm_conv1d.weight"), w.readF32("backbone.layers.0.mixer.conv1d.weight"));
  for (const [hf, gg] of [
    ["backbone.embeddings.weight", "token_embd.weight"],
    ["backbone.norm_f.weight", "output_norm.weight"],
    ["backbone.layers.0.norm.weight", "blk.0.attn_norm.weight"],
    ["backbone.layers.0.mixer.in_proj.weight", "blk.0.ssm_in.weight"],
    ["backbone.layers.0.mixer.x_proj.weight", "blk.0.ssm_x.weight"],
    ["backbone.layers.0.mixer.dt_proj.weight", "blk.0.ssm_dt.weight"],
    ["backbone.layers.0.mixer.dt_proj.bias", "blk.0.ssm_dt.bias"],
    ["backbone.layers.0.mixer.D", "blk.0.ssm_d"],
    ["backbone.layers.0.mixer.out_proj.weight", "blk.0.ssm_out.weight"],
  ]) {
    assert.deepEqual(g.readTensor(gg), w.readF32(hf), gg);
  }
  assert.ok(!g.tensors.has("output.weight"), "tied: llama.cpp reuses token_embd");
  w.close();
});

test("export refuses what llama.cpp cannot take, with one line", () => {
  const err = (dir: string, re: RegExp, type: "f32" | "auto" = "auto") =>
    assert.throws(() => exportGguf(dir, path.join(tmp, "x.gguf"), type), (e) => e instanceof SeqlabError && re.test(e.message) && !e.message.includes("\n"));
  err(path.join(VARIANT_FIXTURES, "gpt2_variant"), /model_type "gpt2" has no GGUF mapping \(export supports: llama, mamba, mamba2\)/);
  err(path.join(VARIANT_FIXTURES, "mamba_conv3_auto"), /use_bias \(biased in\/out projections\) has no mamba GGUF mapping/);
  err(path.join(VARIANT_FIXTURES, "llama_mha_headdim"), /mlp_bias has no llama GGUF mapping/);
  const wide = path.join(tmp, "mamba-wide");
  fs.cpSync(path.join(VARIANT_FIXTURES, "mamba_state64_noconvbias"), wide, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(wide, "config.json"), "utf8"));
  assert.notEqual(cfg.intermediate_size, 2 * cfg.hidden_size, "this fixture has expand != 2");
  err(wide, /llama\.cpp's mamba takes only intermediate_size = 2 x hidden_size/);
  const r = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "export", "--model", wide, "--gguf", path.join(tmp, "y.gguf"), "--type", "q4"], { encoding: "utf8" });
  assert.equal(r.stderr.trim(), 'seqlab: export: --type must be one of f32, f16, auto, got "q4"');
  const noOut = spawnSync(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "export", "--model", wide], { encoding: "utf8" });
  assert.equal(noOut.stderr.trim(), "seqlab: export: give --hf DIR (a Hugging Face directory) or --gguf FILE (for llama.cpp)");
});

const hasNodeLlamaCpp = (() => {
  try {
    createRequire(import.meta.url).resolve("node-llama-cpp");
    return true;
  } catch {
    return false;
  }
})();

test("llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU binary) loads exported Llamas and decodes them like seqlab", { skip: hasNodeLlamaCpp ? false : "node-llama-cpp is not installed" }, async () => {
  const script = path.join(tmp, "llama_cpp_greedy.mjs");
  fs.writeFileSync(
    script,
    `import { getLlama } from "node-llama-cpp";
const [prompt, ...files] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, build: "never", usePrebuiltBinaries: true, logLevel: "error" });
const results = [];
for (const file of files) {
  const model = await llama.loadModel({ modelPath: file });
  const context = await model.createContext({ contextSize: 128 });
  const out = [];
  for await (const t of context.getSequence().evaluate(JSON.parse(prompt), { temperature: 0 })) { out.push(t); if (out.length >= 10) break; }
  results.push(out);
  await context.dispose(); await model.dispose();
}
console.log(JSON.stringify(results));
await llama.dispose();`,
  );
  fs.symlinkSync(path.join(ROOT, "node_modules"), path.join(tmp, "node_modules"));
  const dirs = [
    path.join(tmp, "tiny-chat"), // tokenizer.json vocabulary
    path.join(VARIANT_FIXTURES, "llama_rope_llama3"), // minimal vocabulary, llama3 rope_freqs
    path.join(VARIANT_FIXTURES, "llama_tied_mqa"), // tied embeddings, one KV head
  ];
  if (!fs.existsSync(dirs[0])) writeTinyChatModel(dirs[0], 2);
  const files = dirs.map((dir) => {
    const out = path.join(tmp, `${path.basename(dir)}-nlc.gguf`);
    exportGguf(dir, out, "f32");
    return out;
  });
  const prompt = [1, 5, 9, 2, 7];
  const r = spawnSync(process.execPath, [script, JSON.stringify(prompt), ...files], { encoding: "utf8", cwd: tmp, timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const theirs = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as number[][];
  for (const [i, dir] of dirs.entries()) {
    const ours = await generate(loadModel(dir, ref32), prompt, { maxNewTokens: 10 });
    assert.deepEqual(theirs[i], ours.tokens.slice(prompt.length), dir);
  }
});
