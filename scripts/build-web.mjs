// The browser playground: web/ bundled into dist/web (page + engine worker + chunks).
// Everything the engine needs is bundled; Node-only modules may be reached only through
// dynamic imports that the browser never takes (the cpu backend's Node worker threads), and the
// build fails if any is imported statically by the page or the worker.
import { build, context } from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

const OUT = "dist/web";

export function webBuildOptions(outdir = OUT) {
  return {
    entryPoints: { main: "web/src/main.ts", engine: "web/src/engine/worker.ts" },
    outdir,
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "browser",
    target: ["chrome113", "firefox121", "safari17"],
    sourcemap: "linked",
    minify: true,
    metafile: true,
    // `webgpu` is the Node Dawn package (device.ts imports it by a variable name, only in Node)
    external: ["node:*", "webgpu"],
    logLevel: "warning",
    chunkNames: "chunks/[name]-[hash]",
  };
}

/**
 * Statically imported modules of the page and the worker, transitively; none may be a node:
 * builtin. (Chunks split off at dynamic imports are entry points too in the metafile, but the
 * browser loads them only if that import runs.)
 */
export function checkNoNodeImports(metafile, entries = Object.values(webBuildOptions().entryPoints)) {
  const outputs = metafile.outputs;
  for (const [file, out] of Object.entries(outputs)) {
    if (!entries.includes(out.entryPoint)) continue;
    const seen = new Set();
    const walk = (f) => {
      if (seen.has(f)) return;
      seen.add(f);
      for (const imp of outputs[f]?.imports ?? []) {
        if (imp.kind !== "import-statement") continue;
        if (imp.path.startsWith("node:")) throw new Error(`${file} imports ${imp.path} statically (through ${f}): Node modules must stay out of the browser bundle`);
        if (!imp.external) walk(imp.path);
      }
    };
    walk(file);
  }
}

function copyStatic(outdir = OUT) {
  for (const f of ["index.html", "style.css"]) copyFileSync(`web/${f}`, `${outdir}/${f}`);
}

export async function buildWeb() {
  rmSync(OUT, { recursive: true, force: true });
  mkdirSync(OUT, { recursive: true });
  const r = await build(webBuildOptions());
  checkNoNodeImports(r.metafile);
  copyStatic();
}

/**
 * Rebuild into `outdir` on every change (npm run web); resolves after the first build. The dev
 * build has its own folder, so it never clobbers the dist/web that `seqlab serve` and the tests use.
 */
export async function watchWeb(outdir, onRebuild) {
  rmSync(outdir, { recursive: true, force: true });
  mkdirSync(outdir, { recursive: true });
  const ctx = await context({
    ...webBuildOptions(outdir),
    plugins: [
      {
        name: "after-build",
        setup(b) {
          b.onEnd((r) => {
            if (r.errors.length) return;
            try {
              checkNoNodeImports(r.metafile);
              copyStatic(outdir);
              onRebuild?.();
            } catch (e) {
              console.error(String(e.message ?? e));
            }
          });
        },
      },
    ],
  });
  await ctx.rebuild();
  await ctx.watch();
  return ctx;
}
