#!/usr/bin/env node
/**
 * What the NVIDIA driver made of our WGSL: machine code (SASS) and register counts of every
 * compute pipeline a run compiled, read from the driver's shader disk cache. A development aid
 * for the WebGPU kernels (no profiler reaches Vulkan pipelines on the device machines).
 *
 *   __GL_SHADER_DISK_CACHE_PATH=/tmp/c __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1 node dist/bench-gpu.mjs ...
 *   node scripts/gpu-sass.mjs /tmp/c OUTDIR        # needs `zstd` and CUDA's `nvdisasm` on PATH
 *
 * Each pipeline lands in the cache as a zstd frame holding an "NVDANVVMNVuc" container; its
 * header gives the code's size (u32 at byte 76) and offset (byte 80, plus 8), and at the
 * offset stored at byte 48 (plus 8) a field that behaves as the register count (layout found by
 * inspection, not documented). OUTDIR gets one NN.sass per pipeline and summary.txt: registers,
 * instruction count, the counts of the opcodes that matter for these kernels and the memory
 * instructions by width (LDS.U16 apart from LDSM and LDS.128).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [cacheDir, outDir] = process.argv.slice(2);
if (!cacheDir || !outDir) {
  console.error("usage: node scripts/gpu-sass.mjs CACHE_DIR OUT_DIR");
  process.exit(2);
}
mkdirSync(outDir, { recursive: true });

const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const CONTAINER = Buffer.from("NVDANVVMNVuc");
const WATCH = ["LDSM", "FFMA", "FMUL", "FADD", "MUFU", "LDS", "STS", "LDG", "STG", "SHFL", "BAR", "IMAD", "IADD3", "LOP3", "ISETP", "FSETP", "SEL", "FSEL", "IMNMX", "FMNMX", "LDL", "STL", "BRA", "ATOM", "LDC", "ULDC", "HMMA"];

function filesUnder(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}

function framesOf(buf) {
  const out = [];
  for (let i = buf.indexOf(ZSTD_MAGIC); i >= 0; i = buf.indexOf(ZSTD_MAGIC, i + 4)) {
    try {
      out.push(execFileSync("zstd", ["-d", "-c", "-q"], { input: buf.subarray(i), maxBuffer: 1 << 28, stdio: ["pipe", "pipe", "ignore"] }));
    } catch (e) {
      // trailing bytes after the frame make zstd exit non-zero; what it decoded is still there
      if (e.stdout?.length) out.push(e.stdout);
    }
  }
  return out;
}

/** Counts of the watched opcodes; memory operations by their full form (LDS.U16 apart from LDS.128). */
function counts(sass) {
  const c = Object.fromEntries(WATCH.map((w) => [w, 0]));
  const forms = {};
  let total = 0;
  for (const line of sass.split("\n")) {
    const m = /\/\*[0-9a-f]{4,}\*\/\s+(?:@!?U?P\w+\s+)?([A-Z0-9_]+)([.A-Z0-9_]*)/.exec(line);
    if (!m) continue;
    total++;
    const op = m[1];
    if (op in c) c[op]++;
    if (/^(LDS|STS|LDSM|LDG|STG|HMMA)$/.test(op)) forms[op + m[2]] = (forms[op + m[2]] ?? 0) + 1;
  }
  return { total, c, forms };
}

const lines = [];
// zstd decodes on past one frame where the next follows directly: a pipeline may show up twice
const seen = new Set();
let n = 0;
for (const file of filesUnder(cacheDir)) {
  for (const frame of framesOf(readFileSync(file))) {
    for (let at = frame.indexOf(CONTAINER); at >= 0; at = frame.indexOf(CONTAINER, at + CONTAINER.length)) {
      // the stored offsets count from byte 8 of the container
      const size = frame.readUInt32LE(at + 76);
      const offset = frame.readUInt32LE(at + 80) + 8;
      const regAt = frame.readUInt32LE(at + 48) + 8;
      if (!size || at + offset + size > frame.length) continue;
      const regs = at + regAt + 4 <= frame.length ? frame.readUInt32LE(at + regAt) : -1;
      const code = frame.subarray(at + offset, at + offset + size);
      const key = code.toString("base64");
      if (seen.has(key)) continue;
      seen.add(key);
      const id = String(n++).padStart(2, "0");
      const raw = join(outDir, `${id}.bin`);
      writeFileSync(raw, code);
      let sass = "";
      try {
        sass = execFileSync(process.env.NVDISASM ?? "nvdisasm", ["-b", "SM90", "-hex", raw], { maxBuffer: 1 << 28 }).toString();
      } catch (e) {
        sass = `nvdisasm failed: ${String(e.stderr ?? e.message).split("\n")[0]}`;
      }
      writeFileSync(join(outDir, `${id}.sass`), sass);
      const { total, c, forms } = counts(sass);
      const nonzero = Object.entries(c).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(", ");
      const memory = Object.entries(forms).map(([k, v]) => `${k} ${v}`).join(", ");
      lines.push(`${id}  regs ${regs}  instructions ${total}  ${nonzero}  | ${memory}`);
    }
  }
}
writeFileSync(join(outDir, "summary.txt"), lines.join("\n") + "\n");
console.log(lines.join("\n"));
