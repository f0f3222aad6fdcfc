/**
 * The `split` kernel (kernels.ts) as one copy2d a piece, through a backend's own copy2d: what ref
 * and the cpu backend run (on the CPU a kernel call costs no dispatch; webgpu writes up to four
 * pieces in one dispatch instead).
 */
type Copy2d<S> = (out: S, x: S, rows: number, cols: number, outStride: number, outOffset: number, xStride: number, xOffset: number, accumulate: boolean) => void;

export function splitByCopies<S>(copy: Copy2d<S>, outs: S[], x: S, rows: number, sizes: number[]): void {
  const n = sizes.reduce((a, b) => a + b, 0);
  let off = 0;
  sizes.forEach((s, i) => {
    copy(outs[i], x, rows, s, s, 0, n, off, false);
    off += s;
  });
}
