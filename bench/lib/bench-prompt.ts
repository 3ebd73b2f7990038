/**
 * The fixed prompt of the candle-vs-llama.cpp benchmark, as token ids: both in-process engines
 * evaluate the very same ids (BOS first), so they do the same work whatever their tokenizers do
 * with text. The passage is prose cut mid-sentence, which a small model continues for hundreds of
 * tokens rather than ending, so that the decode count is the one asked for (the candle API cannot
 * ignore an end-of-generation token).
 */

const passage =
  'Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter and his three daughters. ' +
  'The eldest was proud, the second was clever, and the youngest was kind to every creature she met. One winter morning, ' +
  "she found a small fox caught in a hunter's trap near the frozen river. Although her hands were cold and her father had " +
  'warned her never to wander so far from home, she knelt in the snow and opened the trap. The fox looked at her for a long ' +
  'moment, then spoke in a voice like the wind in the pines, and promised her three wishes for the kindness she had shown. ' +
  'She walked home slowly, thinking about what she would ask for, while the sun went down behind the hills and the first ' +
  'stars came out above the village. Her sisters laughed when she told them, but that night, as the fire burned low, ';

type Tokenizer = {tokenize(text: string, options?: {addSpecial?: boolean; parseSpecial?: boolean}): number[]};

/** Exactly `count` token ids: the passage (repeated as often as needed) tokenized with BOS, cut to length. */
export function benchPromptTokens(tokenizer: Tokenizer, count: number): number[] {
  if (!Number.isInteger(count) || count < 1) {
    throw new Error(`the prompt needs at least one token, not ${count}`);
  }
  let text = passage;
  let tokens = tokenizer.tokenize(text, {addSpecial: true});
  while (tokens.length < count) {
    text += passage;
    tokens = tokenizer.tokenize(text, {addSpecial: true});
  }
  return tokens.slice(0, count);
}
