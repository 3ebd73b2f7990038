/**
 * The prompts on which the candle engine's greedy tokens are compared with llama.cpp's: by the
 * correctness test on CPU (test/native/correctness.test.ts) and by bench/candle-agreement.ts on a
 * GPU, against a reference recorded on CPU.
 */
export const agreementPrompts = [
  'The capital of France is',
  'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
  // 95 tokens: long enough for llama.cpp's tiled flash-attention kernel (64 rows or more).
  'Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter and his three daughters. ' +
    'The eldest was proud, the second was clever, and the youngest was kind to every creature she met. One winter morning, ' +
    "she found a small fox caught in a hunter's trap near the frozen river. Although her hands were cold and her father had " +
    'warned her never to wander so far from home, she knelt in the snow and',
  'Q: What are the three primary colors?\nA:',
] as const;

/** Positions where two greedy generations agree, and the first where they part (undefined: none). */
export function agreement(actual: readonly number[], expected: readonly number[]): {agreed: number; length: number; firstDivergence: number | undefined} {
  const length = Math.max(actual.length, expected.length);
  let agreed = 0;
  let firstDivergence: number | undefined;
  for (let position = 0; position < length; position++) {
    if (actual[position] === expected[position]) {
      agreed++;
    } else {
      firstDivergence ??= position;
    }
  }
  return {agreed, length, firstDivergence};
}
