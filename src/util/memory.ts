/**
 * Memory sizes: parsing them from flags, and how much memory this machine has free for a model.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import { SeqlabError } from "./errors.js";

const UNITS: Record<string, number> = {
  "": 1, b: 1,
  k: 1e3, kb: 1e3, kib: 1024,
  m: 1e6, mb: 1e6, mib: 1024 ** 2,
  g: 1e9, gb: 1e9, gib: 1024 ** 3,
  t: 1e12, tb: 1e12, tib: 1024 ** 4,
};

/** "512MiB", "8G", "1.5GB", "123456" (bytes) -> bytes; `what` names the flag in errors. */
export function parseByteSize(what: string, text: string): number {
  const m = /^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) {
    throw new SeqlabError(`${what} must be a size such as 8GiB, 512MB or 1073741824 (bytes), got "${text}"`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/**
 * Memory a new allocation can use now: MemAvailable from /proc/meminfo on Linux (free memory
 * plus reclaimable caches, what the kernel itself estimates), os.freemem() elsewhere.
 */
export function availableMemoryBytes(): number {
  try {
    const m = /^MemAvailable:\s+(\d+)\s+kB/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return os.freemem();
}
