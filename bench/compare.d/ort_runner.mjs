// One ONNX Runtime contender for bench/compare: loads MODEL, runs WARMUP + RUNS frames of the
// float32 input in INPUT (raw, shape given as SHAPE "1,3,224,224") on THREADS intra-op threads,
// writes the first output (raw float32) to OUTPUT and prints {"ms": [...]} on stdout. With
// ORT_PROFILE_PREFIX set, ONNX Runtime's profiler writes its per-node times to PREFIX_*.json
// (bench/ort_layers).
//   node ort_runner.mjs MODEL INPUT SHAPE THREADS WARMUP RUNS OUTPUT
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ort = require(process.env.ORT_NODE_PATH || 'onnxruntime-node');

const [model, inputPath, shapeText, threads, warmup, runs, outputPath] = process.argv.slice(2);
const shape = shapeText.split(',').map(Number);
const bytes = readFileSync(inputPath);
const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
  ...(process.env.ORT_PROFILE_PREFIX ? { enableProfiling: true, profileFilePrefix: process.env.ORT_PROFILE_PREFIX } : {}),
});
const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
let result;
for (let i = 0; i < Number(warmup); ++i) result = await session.run(feeds);
const ms = [];
for (let i = 0; i < Number(runs); ++i) {
  const t0 = process.hrtime.bigint();
  result = await session.run(feeds);
  ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
const out = result[session.outputNames[0]].data;
writeFileSync(outputPath, Buffer.from(out.buffer, out.byteOffset, out.byteLength));
if (process.env.ORT_PROFILE_PREFIX) session.endProfiling();
console.log(JSON.stringify({ ms, version: ort.env.versions?.common ?? 'unknown' }));
