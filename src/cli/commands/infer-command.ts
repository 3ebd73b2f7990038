import {Command, Option} from 'commander';
import {RbeeError} from '../../errors.js';
import type {InferRequest, InferResponse} from '../../protocol/wire.js';
import {globalOptions, hiveClient} from '../context.js';
import {emit} from '../output.js';
import {collect, integerFlag, numberFlag} from '../parse-flags.js';

type InferOptions = {model?: string; maxTokens?: number; temperature?: number; seed?: number; stop?: string[]; stream: boolean};

export function inferCommand(): Command {
  return new Command('infer')
    .description('generate text through the hive (tokens stream to the terminal)')
    .argument('<prompt...>', 'the prompt, continued as text (e.g. "The capital of France is": the default model completes, it does not chat)')
    .addOption(new Option('--model <model>', 'model to route to (default: the only one served)').env('RBEE_MODEL'))
    .option('--max-tokens <n>', 'tokens to generate at most', integerFlag('--max-tokens', 1, 32_768))
    .option('--temperature <t>', '0 for greedy decoding', numberFlag('--temperature', 0, 2))
    .option('--seed <n>', 'sampling seed', integerFlag('--seed', 0, 2 ** 32 - 1))
    .option('--stop <text>', 'stop when this text is generated (repeatable)', collect)
    .option('--no-stream', 'wait for the whole answer')
    .action(async (promptWords: string[], options: InferOptions, command: Command) => {
      const global = globalOptions(command);
      const request: InferRequest = {
        prompt: promptWords.join(' '),
        ...(options.model === undefined ? {} : {model: options.model}),
        ...(options.maxTokens === undefined ? {} : {max_tokens: options.maxTokens}),
        ...(options.temperature === undefined ? {} : {temperature: options.temperature}),
        ...(options.seed === undefined ? {} : {seed: options.seed}),
        ...(options.stop === undefined ? {} : {stop: options.stop}),
      };
      const client = hiveClient(command, 600_000);
      if (global.json === true || !options.stream) {
        const response = await client.infer(request, {timeoutMs: 600_000});
        emit(global, response, () => response.text);
        return;
      }
      let final: InferResponse | null = null;
      for await (const event of client.inferStream(request)) {
        if (event.type === 'token') {
          process.stdout.write(event.text);
        } else if (event.type === 'error') {
          throw new RbeeError('upstream_error', `generation failed: ${event.error.message}`);
        } else {
          final = event;
        }
      }
      process.stdout.write('\n');
      if (final === null) {
        throw new RbeeError('upstream_error', 'the stream ended without a final event');
      }
      const done: InferResponse = final;
      process.stderr.write(`[${done.tokens_generated} tokens, ${done.finish_reason}, ${(done.duration_ms / 1000).toFixed(2)} s, ${done.worker_id}]\n`);
    });
}
