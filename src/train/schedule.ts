/** Learning-rate schedule: linear warmup, then cosine decay to a floor (as in GPT-3 / nanoGPT). */
export interface ScheduleOptions {
  peakLr: number;
  warmupSteps: number;
  totalSteps: number;
  /** floor as a fraction of the peak (default 0.1) */
  minRatio?: number;
}

export function learningRate(step: number, o: ScheduleOptions): number {
  const min = o.peakLr * (o.minRatio ?? 0.1);
  if (step < o.warmupSteps) return (o.peakLr * (step + 1)) / o.warmupSteps;
  if (step >= o.totalSteps) return min;
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  return min + 0.5 * (o.peakLr - min) * (1 + Math.cos(Math.PI * progress));
}
