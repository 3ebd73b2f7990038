// Copy to rbee.config.ts (or .js/.json/.yaml). Every key is optional; RBEE_* variables and CLI
// flags override what is set here.
import {defineConfig} from 'rbee';

export default defineConfig({
  hive: {
    host: '127.0.0.1', // a non-loopback address needs a token
    port: 7833,
    // token: 'a-long-random-secret-string', // or RBEE_TOKEN
    heartbeatIntervalMs: 5000, // how often workers report to the hive
    missedHeartbeats: 3, // a worker silent this many intervals is failed; a worker waits as many for a silent hive
    orphanTimeoutMs: 15000, // a worker whose hive is silent this long exits (default: missedHeartbeats intervals)
    loadStallTimeoutMs: 120000, // a download or model load with no progress this long has failed
    stopGraceMs: 10000, // a stopping worker may finish this long before SIGKILL
    // modelDirs: ['/srv/models'], // model files must lie in these folders (RBEE_MODEL_DIRS)
    // Models on demand (the `models` catalogue below):
    // maxLoadedModels: 2, // at most this many catalogue models at once; least recently used idle ones make room
    vramHeadroom: 0.1, // the share of a device's memory a start leaves free
    idleTimeout: '10m', // a catalogue worker with no request this long is stopped
    modelStartTimeout: '5m', // how long a request waits for its model to start
    spareWorkers: true, // one booted worker process kept per type in use, so a spawn skips its process's start
  },
  // Models on demand: a request naming one of these starts a worker for it when none serves it.
  models: {
    // 'gemma-small': {model: 'default', device: 'auto', contextSize: 2048, idleTimeout: '30m'},
    // 'always-on': {model: '/srv/models/llama-8b.gguf', device: 'cuda:0', pin: true},
    // 'big': {model: '/srv/models/llama-70b.gguf', group: {devices: ['cuda:0', 'cuda:1']}, idleTimeout: '1h'}, // a worker group
  },
  workers: {
    contextSize: 4096, // tokens of context per parallel sequence
    threads: 2, // CPU threads per worker; default: the machine's physical cores
    parallel: 4, // requests a worker generates at once; more wait in its queue
  },
  // Adapter plugins beside the built-in ones: package names, paths (relative to this file),
  // [name, options] pairs, or adapter objects from a factory. `rbee adapter add` edits JSON/YAML configs.
  adapters: [
    // 'rbee-adapter-acme',
    // ['./adapters/my-engine.js', {endpoint: 'http://127.0.0.1:9000'}],
  ],
  // Options of the built-in adapters, by worker type.
  types: {
    llamacpp: {
      engine: 'auto', // 'embedded' (node-llama-cpp in the worker), 'llama-server', or 'auto': llama-server when serverPath is set
      // serverPath: '/usr/local/bin/llama-server', // or RBEE_LLAMA_SERVER; `rbee engines install llama.cpp` builds one
      serverArgs: [],
    },
  },
});
