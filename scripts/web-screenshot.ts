// The README's picture of the playground (docs/playground.png): build first (npm run build),
// then `node --import tsx scripts/web-screenshot.ts [backend]` (default cpu). Decodes with a
// Transformer, a Mamba and the hybrid, trains one model briefly, runs a small passkey experiment.
import * as fs from "node:fs";
import * as path from "node:path";
import { launch, openPlayground, servePlayground, WEBGPU_FLAGS } from "../test/support/browser.js";

const backend = process.argv[2] ?? "cpu";
const served = await servePlayground();
const { context, close } = await launch(backend === "webgpu" ? WEBGPU_FLAGS : []);
const waitText = (page: import("playwright-core").Page, id: string, re: RegExp) =>
  page.waitForFunction(([i, s]) => new RegExp(s).test(document.getElementById(i)!.textContent!), [id, re.source] as const, { timeout: 300000 });
try {
  const { page } = await openPlayground(context, `${served.url}?backend=${backend}&size=small`);
  await page.setViewportSize({ width: 1500, height: 1000 });
  for (const arch of ["transformer", "mamba", "hybrid"]) {
    await page.selectOption("#arch", arch);
    await page.click("#fresh");
    await waitText(page, "model-info", /parameters/);
    await page.fill("#new-tokens", "256");
    await page.fill("#temperature", "0.8");
    await page.click("#generate");
    await waitText(page, "gen-stats", /^done/);
  }
  await page.fill("#train-steps", "60");
  await page.click("#train");
  await waitText(page, "train-stats", /^done/);
  await page.check('#pk-archs input[value="hybrid"]');
  for (const [id, v] of [["pk-steps", "60"], ["pk-trials", "8"], ["pk-batch", "8"]]) await page.fill(`#${id}`, v);
  await page.click("#passkey");
  await waitText(page, "pk-status", /^done/);
  fs.mkdirSync("docs", { recursive: true });
  await page.screenshot({ path: path.resolve("docs/playground.png"), fullPage: true });
  console.log("wrote docs/playground.png");
} finally {
  await close();
  served.stop();
}
