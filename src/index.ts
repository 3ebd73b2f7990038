// The package's public entry: what a config file, an adapter plugin or a client program imports.
export {defineConfig, type UserConfig} from './config/schema.js';
export {RbeeError, type ErrorCode} from './errors.js';
export {
  assertAdapter,
  defineAdapter,
  deviceBackend,
  deviceBackends,
  parseAdapterOptions,
  type AdapterBackends,
  type AdapterContext,
  type AdapterGroup,
  type AdapterHeartbeat,
  type AdapterInferRequest,
  type AdapterWorkflowOutput,
  type AdapterWorkflowRequest,
  type AdapterWorkflowResult,
  type AdapterWorkflows,
  type BackendSupport,
  type DeviceBackend,
  type EngineChatMessage,
  type EngineProcess,
  type EngineProcessExit,
  type GenerateResult,
  type RbeeAdapter,
} from './adapters/adapter-api.js';
export {engineAuthorization, engineJson, engineSse, isOpenAiStreamEnd, openAiStream, parsePrometheusText, processRss} from './adapters/engine-http.js';
export {findExecutable} from './adapters/find-executable.js';
export {
  gpuFreeMemory,
  gpuTotalMemory,
  nvidiaComputeApps,
  nvidiaGpus,
  nvidiaSmiProgram,
  queryNvidiaSmi,
  type ComputeApp,
  type NvidiaGpu,
} from './adapters/nvidia-smi.js';
export {readSse, SseParser, type SseEvent} from './protocol/sse-reader.js';
export {WatchedEngine, type WatchedEngineOptions} from './adapters/watched-engine.js';
export {engineMemory, groupVram, processTree, processTreeRss} from './adapters/process-memory.js';
export {findLlamaCpp, type LlamaCppInstall} from './engines/llama-cpp-build.js';
export {findOllama, ollamaVersion, type OllamaInstall} from './engines/ollama-build.js';
export {comfyuiInstallCommand, findComfyUi, type ComfyUiInstall} from './engines/comfyui-install.js';
export {cudaIndex, outputUrl, parseOutputPath, type WorkflowEvent, type WorkflowGraph, type WorkflowOutputFile} from './protocol/wire.js';
export {
  loadNativeBinding,
  loadNativeModel,
  nativeBackends,
  nativeBindingAvailable,
  nativeForwardPaths,
  NativeEngineError,
  type NativeChatMessage,
  type NativeErrorCode,
  type NativeForwardPath,
  type NativeGenerateRequest,
  type NativeGenerateResult,
  type NativeLoadOptions,
  type NativeMemoryInfo,
  type NativeModel,
  type NativeModelInfo,
  type NativeTensorParallel,
} from './native/index.js';
export {checkNativeTensorParallel, openNativeShard, type NativeShard, type NativeShardOptions} from './native/shard.js';
