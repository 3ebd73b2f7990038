// Greedy reference tokens from llama.cpp itself, on whatever backend it was built for (the CUDA
// build on a GPU machine): the candle engine's tokens are compared with these by
// bench/gpu/llama-agreement.mjs. Prompts are token ids (BOS included), so both sides evaluate the
// very same ids whatever their tokenizers do; the continuation runs its full length (an
// end-of-generation token does not stop it), like the candle side's `maxTokens`.
//
//   rbee-llama-ref <model.gguf> <n_predict> <prompts.txt> <out.json> [batch|serial|nofa|cpu] [forced.txt]
//   prompts.txt: one prompt a line, token ids separated by spaces
//   forced.txt (teacher forcing): a continuation a line, one per prompt; each step is fed the
//     continuation's token instead of its own choice, so "tokens" are this run's top-1 at each
//     position of that text (how another llama.cpp run's text scores here)
//   batch (default): the prompt in one llama_decode, as every llama.cpp tool does it;
//   serial: the prompt one token a llama_decode, so the prompt takes the decode kernels (MMVQ and
//     the vector flash attention) instead of the batched ones (MMQ and the MMA flash attention):
//     how much of a disagreement is the prompt's arithmetic;
//   nofa: batch with flash attention off;
//   cpu: batch on llama.cpp's CPU backend alone (the CUDA build's own CPU kernels): how far
//     llama.cpp's CUDA arithmetic agrees with its CPU arithmetic, which rbee's CPU path replays.
//
// Built inside llama.cpp's tree (bench/gpu/llama-ref/CMakeLists.txt, added as tools/rbee-ref).
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

// One vector of token ids a non-empty line.
static std::vector<std::vector<llama_token>> read_lines(const char* file) {
  std::vector<std::vector<llama_token>> lines;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::vector<llama_token> ids;
    for (long id; words >> id;) ids.push_back((llama_token)id);
    if (!ids.empty()) lines.push_back(ids);
  }
  return lines;
}

int main(int argc, char** argv) {
  const std::string mode = argc >= 6 ? argv[5] : "batch";
  if ((argc < 5 || argc > 7) || (mode != "batch" && mode != "serial" && mode != "nofa" && mode != "cpu")) {
    std::fprintf(stderr, "usage: %s <model.gguf> <n_predict> <prompts.txt> <out.json> [batch|serial|nofa|cpu] [forced.txt]\n", argv[0]);
    return 2;
  }
  const int n_predict = std::atoi(argv[2]);
  const std::vector<std::vector<llama_token>> prompts = read_lines(argv[3]);
  if (prompts.empty() || n_predict < 1) {
    std::fprintf(stderr, "no prompts in %s or n_predict < 1\n", argv[3]);
    return 2;
  }
  const std::vector<std::vector<llama_token>> forced = argc == 7 ? read_lines(argv[6]) : std::vector<std::vector<llama_token>>();
  if (argc == 7) {
    bool fits = forced.size() == prompts.size();
    for (const auto& line : forced) fits = fits && (int)line.size() >= n_predict;
    if (!fits) {
      std::fprintf(stderr, "%s needs a continuation of at least %d tokens for each of the %zu prompts\n", argv[6], n_predict, prompts.size());
      return 2;
    }
  }

  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  // cpu: nothing on the GPU, not even a large batch's products (op_offload) or the KV cache.
  const bool cpu = mode == "cpu";
  mp.n_gpu_layers = cpu ? 0 : 999;
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (model == nullptr) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

  FILE* out = std::fopen(argv[4], "w");
  if (out == nullptr) return 1;
  std::fprintf(out, "{\"engine\": \"llama.cpp rbee-llama-ref (libllama, n_gpu_layers %d, default context params)\", \"mode\": \"%s\", \"teacher_forced\": %s, \"n_predict\": %d, \"prompts\": [\n",
               mp.n_gpu_layers, mode.c_str(), forced.empty() ? "false" : "true", n_predict);
  for (size_t p = 0; p < prompts.size(); ++p) {
    // A fresh context per prompt: nothing of the last one stays in the KV cache.
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 2048;
    cp.n_batch = 2048;
    if (mode == "nofa") cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if (cpu) {
      cp.op_offload = false;
      cp.offload_kqv = false;
    }
    llama_context* ctx = llama_init_from_model(model, cp);
    if (ctx == nullptr) return 1;
    std::vector<llama_token> prompt = prompts[p];
    std::vector<llama_token> generated;
    std::vector<float> margins;
    if (mode == "serial") {
      for (llama_token& token : prompt) {
        if (llama_decode(ctx, llama_batch_get_one(&token, 1)) != 0) return 1;
      }
    } else if (llama_decode(ctx, llama_batch_get_one(prompt.data(), (int32_t)prompt.size())) != 0) {
      return 1;
    }
    for (int i = 0; i < n_predict; ++i) {
      const float* logits = llama_get_logits_ith(ctx, -1);
      int best = 0, second = -1;
      for (int t = 1; t < n_vocab; ++t) {
        if (logits[t] > logits[best]) {
          second = best;
          best = t;
        } else if (second < 0 || logits[t] > logits[second]) {
          second = t;
        }
      }
      generated.push_back(best);
      margins.push_back(logits[best] - logits[second]);
      llama_token next = forced.empty() ? best : forced[p][i];
      if (i + 1 < n_predict && llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) return 1;
    }
    std::fprintf(out, " {\"prompt_tokens\": [");
    for (size_t i = 0; i < prompt.size(); ++i) std::fprintf(out, "%s%d", i ? ", " : "", prompt[i]);
    std::fprintf(out, "], \"tokens\": [");
    for (size_t i = 0; i < generated.size(); ++i) std::fprintf(out, "%s%d", i ? ", " : "", generated[i]);
    // The logit gap between the first and second choice at each step: a near-tie is where two
    // correct implementations may part.
    std::fprintf(out, "], \"top1_margin\": [");
    for (size_t i = 0; i < margins.size(); ++i) std::fprintf(out, "%s%.5f", i ? ", " : "", margins[i]);
    std::fprintf(out, "]}%s\n", p + 1 < prompts.size() ? "," : "");
    llama_free(ctx);
  }
  std::fprintf(out, "]}\n");
  std::fclose(out);
  llama_model_free(model);
  return 0;
}
