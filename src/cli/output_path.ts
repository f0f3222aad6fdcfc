/**
 * Output locations checked before a command starts its work. A showdown or a benchmark runs for
 * minutes and writes its files at the end; an --out that cannot be written should fail in the
 * first second, with a one-line error, not after the run with the results lost.
 *
 * The check writes nothing that stays: it finds the nearest existing ancestor of the path and, where
 * the path would have to be created, creates and removes a probe directory inside that ancestor
 * (permission bits say too little when running as root or on read-only and virtual filesystems).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { SeqlabError } from "../util/errors.js";

/** The nearest existing ancestor of `p` (p itself when it exists). */
function nearestExisting(p: string): string {
  let cur = p;
  while (!fs.existsSync(cur)) {
    const up = path.dirname(cur);
    if (up === cur) return cur;
    cur = up;
  }
  return cur;
}

/** Creating entries in `dir` works (a probe directory made and removed at once). */
function canCreateIn(dir: string): boolean {
  try {
    fs.rmdirSync(fs.mkdtempSync(path.join(dir, ".seqlab-probe-")));
    return true;
  } catch {
    return false;
  }
}

/** `dir` can hold the command's files: an existing writable directory, or creatable under one. */
export function assertWritableDir(what: string, dir: string): void {
  assertCreatable(`${what} ${dir}`, path.resolve(dir), true);
}

/** `file` can be written: an existing writable file, or a new one in a directory that can hold it. */
export function assertWritableFile(what: string, file: string): void {
  const abs = path.resolve(file);
  if (fs.existsSync(abs)) {
    if (fs.statSync(abs).isDirectory()) throw new SeqlabError(`${what} ${file}: is a directory`);
    try {
      fs.accessSync(abs, fs.constants.W_OK);
    } catch {
      throw new SeqlabError(`${what} ${file}: not writable`);
    }
  }
  // the directory too: a read-only mount passes access() for root but refuses the write
  assertCreatable(`${what} ${file}`, path.dirname(abs), false);
}

/** Entries can be made at `dir` (which may not exist yet); errors start with `label`, which names `dir` itself when `named`. */
function assertCreatable(label: string, dir: string, named: boolean): void {
  const base = nearestExisting(dir);
  if (!fs.statSync(base).isDirectory()) throw new SeqlabError(named && base === dir ? `${label}: exists and is not a directory` : `${label}: ${base} is not a directory`);
  if (!canCreateIn(base)) throw new SeqlabError(`${label}: cannot write in ${base}`);
}
