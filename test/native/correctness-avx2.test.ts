/**
 * The candle engine against llama.cpp's AVX2 build (haswell), whatever this CPU has: on a CPU with
 * AVX-512 this proves the AVX2 arithmetic that CPUs without it get (on one with only AVX2 it
 * repeats correctness.test.ts). Set before the engine does any arithmetic: it reads the level once.
 */
import {agreementSuite} from './agreement-suite.js';

process.env.RBEE_CANDLE_GGML_SIMD = 'avx2';
await agreementSuite('haswell');
