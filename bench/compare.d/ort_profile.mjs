// ONNX Runtime's own per-node profile for bench/ort_layers: loads MODEL, runs RUNS frames of the
// float32 input in INPUT (raw, shape given as SHAPE "1,3,224,224") on THREADS intra-op threads
// with profiling on, and prints the profile file's path on stdout.
//   node ort_profile.mjs MODEL INPUT SHAPE THREADS RUNS PREFIX
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const ort = require(process.env.ORT_NODE_PATH || 'onnxruntime-node');

const [model, inputPath, shapeText, threads, runs, prefix] = process.argv.slice(2);
const shape = shapeText.split(',').map(Number);
const bytes = readFileSync(inputPath);
const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);

// The same session options as ort_runner.mjs, so that the nodes are the ones bench/compare times.
const session = await ort.InferenceSession.create(model, {
  intraOpNumThreads: Number(threads),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  executionProviders: ['cpu'],
  enableProfiling: true,
  profileFilePrefix: prefix,
});
const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', data, shape) };
for (let i = 0; i < Number(runs); ++i) await session.run(feeds);
session.endProfiling();
