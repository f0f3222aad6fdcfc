/**
 * Browser tests: the built playground (dist/web) served by `seqlab serve` on 127.0.0.1 at a
 * free port, driven by playwright-core through Debian's /usr/bin/chromium, headless. WebGPU
 * runs on SwiftShader (Chromium's CPU Vulkan driver) with the Dawn toggles the Node backend
 * uses (device.ts); without --enable-unsafe-webgpu navigator.gpu gives no adapter.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { ROOT } from "../helpers.js";

export const CHROMIUM = "/usr/bin/chromium";
export const ARTIFACTS = path.join(ROOT, "test-artifacts");

const QUIET = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-default-apps", "--mute-audio"];
export const WEBGPU_FLAGS = [
  "--enable-unsafe-webgpu",
  "--use-webgpu-adapter=swiftshader",
  "--enable-dawn-features=disable_workgroup_init",
  "--disable-dawn-features=timestamp_quantization",
];

export interface Served {
  url: string;
  stop(): void;
}

/** `seqlab serve --port 0`, resolved when it prints its address (bounded in time). */
export async function servePlayground(timeoutMs = 15000): Promise<Served> {
  const child: ChildProcess = spawn(process.execPath, [path.join(ROOT, "bin/seqlab.mjs"), "serve", "--port", "0"], { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`seqlab serve printed no address in ${timeoutMs} ms: ${err}`)), timeoutMs);
    child.stdout!.on("data", (d) => {
      const m = /http:\/\/127\.0\.0\.1:\d+\//.exec(String(d));
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`seqlab serve exited with ${code}: ${err}`));
    });
  });
  return { url, stop: () => void child.kill("SIGTERM") };
}

/** Chromium with a fresh profile (--user-data-dir), removed on close. */
export async function launch(extraArgs: string[]): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "seqlab-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [...QUIET, ...extraArgs],
    viewport: { width: 1400, height: 1000 },
    timeout: 30000,
  });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Open the playground and wait until its engine has started and built its first model (or failed to). */
export async function openPlayground(context: BrowserContext, url: string, timeoutMs = 60000): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  // an uncaught error on the page fails at once instead of waiting out the timeout
  let failed: (e: Error) => void = () => {};
  const crash = new Promise<never>((_, reject) => (failed = reject));
  page.on("pageerror", (e) => {
    errors.push(e.message);
    failed(new Error(`the page threw: ${e.message}`));
  });
  await page.goto(url, { timeout: timeoutMs });
  await Promise.race([page.waitForFunction(() => (window as any).seqlab?.ready, null, { timeout: timeoutMs }), crash]);
  crash.catch(() => {});
  return { page, errors };
}
