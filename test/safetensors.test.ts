/** safetensors reading and writing, and every way a file can lie. */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { SafetensorsFile, writeSafetensors } from "../src/io/safetensors.js";
import { SeqlabError } from "../src/util/errors.js";
import { f32ToBf16, f32ToF16 } from "../src/util/half.js";
import { HF_FIXTURES, NEEDS_SHARED } from "./helpers.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-st-"));

function rawFile(name: string, header: unknown, data: Buffer, headerLenOverride?: bigint): string {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLenOverride ?? BigInt(json.length));
  const p = path.join(tmp, name);
  fs.writeFileSync(p, Buffer.concat([len, json, data]));
  return p;
}

function expectError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SeqlabError, `expected a SeqlabError, got ${e}`);
    assert.match(e.message, pattern);
    assert.ok(!e.message.includes("\n"), "one line");
    return true;
  });
}

test("round trip of every supported dtype, with metadata and header padding", () => {
  const p = path.join(tmp, "round.safetensors");
  const f32 = Float32Array.from([1.5, -2, 3.25, 0, 1e-8, 65504]);
  const f16 = Uint16Array.from([0.5, -1.25, 3].map(f32ToF16));
  const bf16 = Uint16Array.from([0.5, -1.25, 3].map(f32ToBf16));
  const i32 = Int32Array.from([-7, 0, 2 ** 31 - 1]);
  const i64 = BigInt64Array.from([-5n, 0n, 123456789n]);
  writeSafetensors(
    p,
    [
      { name: "a", dtype: "F32", shape: [2, 3], data: f32 },
      { name: "h", dtype: "F16", shape: [3], data: f16 },
      { name: "b", dtype: "BF16", shape: [3], data: () => bf16 },
      { name: "i", dtype: "I32", shape: [3], data: i32 },
      { name: "l", dtype: "I64", shape: [3, 1], data: i64 },
      { name: "empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    ],
    { format: "pt" },
  );
  const st = SafetensorsFile.open(p);
  try {
    assert.deepEqual(st.metadata, { format: "pt" });
    assert.deepEqual(st.info("a").shape, [2, 3]);
    assert.deepEqual(Array.from(st.read("a")), Array.from(f32));
    assert.deepEqual(Array.from(st.readF32("h")), [0.5, -1.25, 3]);
    assert.deepEqual(Array.from(st.readF32("b")), [0.5, -1.25, 3]);
    assert.deepEqual(Array.from(st.read("i")), [-7, 0, 2 ** 31 - 1]);
    assert.deepEqual(Array.from(st.read("l")), [-5, 0, 123456789]);
    assert.equal(st.read("empty").length, 0);
    const headerLen = Number(fs.readFileSync(p).readBigUInt64LE(0));
    assert.equal(headerLen % 8, 0, "header padded to 8 bytes");
  } finally {
    st.close();
  }
  assert.ok(!fs.readdirSync(tmp).some((f) => f.includes(".tmp-")), "no temporary file left behind");
});

test("reads the shared fixtures' files", { skip: NEEDS_SHARED }, () => {
  const st = SafetensorsFile.open(path.join(HF_FIXTURES, "llama/model.safetensors"));
  assert.deepEqual(st.info("model.embed_tokens.weight").shape, [512, 64]);
  assert.equal(st.readF32("model.norm.weight").length, 64);
  st.close();
});

const ok = { dtype: "F32", shape: [2], data_offsets: [0, 8] };
const eight = Buffer.alloc(8);

test("missing and truncated files", () => {
  expectError(() => SafetensorsFile.open(path.join(tmp, "nope.safetensors")), /nope\.safetensors: cannot open \(ENOENT\)/);
  const short = path.join(tmp, "short.safetensors");
  fs.writeFileSync(short, Buffer.alloc(5));
  expectError(() => SafetensorsFile.open(short), /short\.safetensors: truncated: 5 bytes/);
  const p = rawFile("trunc-header.safetensors", { a: ok }, eight, 1000n);
  expectError(() => SafetensorsFile.open(p), /truncated: header says 1000 bytes/);
  const q = rawFile("trunc-data.safetensors", { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, eight);
  expectError(() => SafetensorsFile.open(q), /tensor "a": data_offsets \[0,16\] run past the end of the data \(8 bytes\)/);
});

test("absurd header length is refused before allocating", () => {
  const p = rawFile("absurd.safetensors", { a: ok }, eight, 1n << 60n);
  expectError(() => SafetensorsFile.open(p), /header length \d+ is not credible/);
});

test("invalid JSON and non-object headers", () => {
  expectError(() => SafetensorsFile.open(rawFile("badjson.safetensors", "{not json", eight)), /header is not valid JSON/);
  expectError(() => SafetensorsFile.open(rawFile("array.safetensors", "[1,2]", eight)), /header is not a JSON object/);
  expectError(() => SafetensorsFile.open(rawFile("entry.safetensors", { a: 5 }, eight)), /tensor "a": header entry is not an object/);
});

test("unknown dtype, bad shapes, bad offsets, byte count mismatch, overlap", () => {
  expectError(
    () => SafetensorsFile.open(rawFile("dtype.safetensors", { a: { ...ok, dtype: "F42" } }, eight)),
    /tensor "a": unknown dtype "F42"/,
  );
  expectError(
    () => SafetensorsFile.open(rawFile("shape.safetensors", { a: { ...ok, shape: [-2] } }, eight)),
    /tensor "a": shape \[-2\] is not a list of non-negative integers/,
  );
  expectError(
    () => SafetensorsFile.open(rawFile("offs.safetensors", { a: { ...ok, data_offsets: [8, 0] } }, eight)),
    /data_offsets \[8,0\] are not a \[begin, end\] pair/,
  );
  expectError(
    () => SafetensorsFile.open(rawFile("count.safetensors", { a: { ...ok, shape: [3] } }, Buffer.alloc(12))),
    /tensor "a": 8 bytes stored but shape \[3\] x F32 needs 12/,
  );
  expectError(
    () =>
      SafetensorsFile.open(
        rawFile("overlap.safetensors", { a: { ...ok, data_offsets: [0, 8] }, b: { ...ok, data_offsets: [4, 12] } }, Buffer.alloc(12)),
      ),
    /tensors "a" and "b" overlap/,
  );
});

test("a valid but unsupported dtype is reported when read, and a missing tensor by name", () => {
  const p = rawFile("u8.safetensors", { a: { dtype: "U8", shape: [8], data_offsets: [0, 8] } }, eight);
  const st = SafetensorsFile.open(p);
  expectError(() => st.read("a"), /tensor "a": dtype U8 is not supported/);
  expectError(() => st.read("zzz"), /tensor "zzz" is missing/);
  st.close();
});
