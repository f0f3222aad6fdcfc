// The README's picture of a showdown report (docs/showdown-report.png):
// `node --import tsx scripts/report-screenshot.ts DIR/report.html [out.png]`. The report is one
// self-contained file, so it is opened from disk with the network off.
import * as fs from "node:fs";
import * as path from "node:path";
import { launch } from "../test/support/browser.js";

const report = process.argv[2];
const out = path.resolve(process.argv[3] ?? "docs/showdown-report.png");
if (!report || !fs.existsSync(report)) {
  console.error(`report-screenshot: give the path of a report.html (got ${report ?? "none"})`);
  process.exit(2);
}
const { context, close } = await launch([]);
try {
  await context.setOffline(true);
  const page = await context.newPage();
  // the summary and the first claims: the whole report is several screens long
  await page.setViewportSize({ width: 1300, height: 1800 });
  await page.goto(`file://${path.resolve(report)}`);
  await page.waitForTimeout(1500); // charts animate in
  fs.mkdirSync(path.dirname(out), { recursive: true });
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await close();
}
