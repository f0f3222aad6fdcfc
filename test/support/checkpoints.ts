/**
 * Test checkpoints built from float32 fixtures: the same weights re-saved as shards with an
 * index (save_pretrained's layout), optionally in half precision.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SafetensorsFile, writeSafetensors, type StDtype, type TensorToWrite } from "../../src/io/safetensors.js";
import { f32ToBf16, f32ToF16 } from "../../src/util/half.js";

export interface ShardOptions {
  shards: number;
  /** F32, F16 or BF16 for float tensors of rank >= 2 (others stay F32, as mixed checkpoints do) */
  dtype: "F32" | "F16" | "BF16";
  /** copy these extra files from the source directory */
  copy?: string[];
}

/** Re-save `srcDir`'s model.safetensors into `dstDir` as `shards` shard files plus model.safetensors.index.json. */
export function writeSharded(srcDir: string, dstDir: string, o: ShardOptions): void {
  fs.mkdirSync(dstDir, { recursive: true });
  fs.copyFileSync(path.join(srcDir, "config.json"), path.join(dstDir, "config.json"));
  for (const f of o.copy ?? []) fs.copyFileSync(path.join(srcDir, f), path.join(dstDir, f));
  const st = SafetensorsFile.open(path.join(srcDir, "model.safetensors"));
  const names = st.names().sort();
  const weightMap: Record<string, string> = {};
  let total = 0;
  for (let s = 0; s < o.shards; s++) {
    const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(o.shards).padStart(5, "0")}.safetensors`;
    const mine = names.filter((_, i) => i % o.shards === s);
    const tensors: TensorToWrite[] = mine.map((name) => {
      const info = st.info(name);
      const half = o.dtype !== "F32" && info.shape.length >= 2;
      const dtype: StDtype = half ? o.dtype : "F32";
      weightMap[name] = file;
      total += info.shape.reduce((a, b) => a * b, 1) * (half ? 2 : 4);
      return { name, dtype, shape: info.shape, data: () => encode(st.readF32(name), dtype) };
    });
    writeSafetensors(path.join(dstDir, file), tensors, { format: "pt" });
  }
  st.close();
  fs.writeFileSync(path.join(dstDir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
}

function encode(x: Float32Array, dtype: StDtype): Float32Array | Uint16Array {
  if (dtype === "F32") return x;
  const f = dtype === "F16" ? f32ToF16 : f32ToBf16;
  return Uint16Array.from(x, (v) => f(v));
}
