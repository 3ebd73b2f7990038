/**
 * rbee's wire protocol: every JSON message that crosses a process boundary, as zod schemas with
 * the exact snake_case names of the spec (architecture part 10). Other people's workers and
 * dashboards speak this, so names here never change casually. Types come from z.infer only.
 *
 * The one wire-schema module for the rest of rbee and for clients; the schemas themselves live by
 * route family in wire/, each small enough to read whole.
 */
export {
  type Heartbeat,
  type HeartbeatAnswer,
  HeartbeatAnswerSchema,
  HeartbeatSchema,
  type HiveCommand,
  HiveCommandSchema,
  ShardWorkerStatusSchema,
  type WorkerHealth,
  WorkerHealthSchema,
  type WorkerStatus,
  WorkerStatusSchema,
  WorkflowProgressSchema,
} from './wire/heartbeat.js';
export {
  type FinishReason,
  FinishReasonSchema,
  type InferRequest,
  InferRequestSchema,
  type InferResponse,
  InferResponseSchema,
  type InferStreamEvent,
  InferStreamEventSchema,
} from './wire/inference.js';
export {
  type ChatCompletion,
  type ChatCompletionChunk,
  ChatCompletionChunkSchema,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  type ChatMessage,
  ChatMessageSchema,
  type CompletionRequest,
  CompletionRequestSchema,
  type ModelList,
  ModelListSchema,
  StreamOptionsSchema,
  type TextCompletion,
  TextCompletionSchema,
} from './wire/openai.js';
export {
  type GroupHealth,
  GroupHealthSchema,
  type GroupInfo,
  GroupInfoSchema,
  type GroupList,
  GroupListSchema,
  type GroupMembership,
  GroupMembershipSchema,
  type GroupRole,
  GroupRoleSchema,
  type SpawnGroupAnswer,
  SpawnGroupAnswerSchema,
  type SpawnGroupRequest,
  type SpawnGroupRequestInput,
  SpawnGroupRequestSchema,
} from './wire/groups.js';
export {
  type AdapterOptions,
  AdapterOptionsSchema,
  MemoryEstimateSchema,
  type SpawnPlan,
  SpawnPlanSchema,
  type SpawnWorkerRequest,
  type SpawnWorkerRequestBody,
  type SpawnWorkerRequestInput,
  SpawnWorkerRequestSchema,
  type WorkerInfo,
  WorkerInfoSchema,
  type WorkerKey,
  WorkerKeySchema,
  type WorkerList,
  WorkerListSchema,
  WorkerSpecSchema,
  type WorkerState,
  WorkerStateSchema,
} from './wire/workers.js';
export {eventKeepAliveMs, eventStallMs, type HiveEvent, HiveEventSchema} from './wire/events.js';
export {type HeartbeatEvent, knownGoodHeartbeatEvent} from './wire/heartbeat-event-check.js';
export {
  type AdapterList,
  AdapterListSchema,
  type DeviceInfo,
  DeviceInfoSchema,
  type ErrorBody,
  ErrorBodySchema,
  type HiveHealth,
  HiveHealthSchema,
  type HiveStatus,
  HiveStatusSchema,
  type OpenAiErrorBody,
  OpenAiErrorBodySchema,
  type ShutdownAnswer,
  ShutdownAnswerSchema,
  type SpareAssignment,
  SpareAssignmentSchema,
  type SpareInfo,
  SpareInfoSchema,
} from './wire/hive.js';
export {DeviceSchema, cudaIndex, type RestartPolicy, RestartPolicySchema} from './wire/fields.js';
export {
  type AutoscaleAction,
  AutoscaleActionSchema,
  type AutoscaleEvent,
  AutoscaleEventSchema,
  type CatalogueList,
  CatalogueListSchema,
  type CatalogueModel,
  CatalogueModelSchema,
  type CatalogueState,
  CatalogueStateSchema,
} from './wire/catalogue.js';
export {
  outputUrl,
  parseOutputPath,
  type WorkerWorkflowRequest,
  WorkerWorkflowRequestSchema,
  type WorkflowCancelResponse,
  WorkflowCancelResponseSchema,
  type WorkflowEvent,
  WorkflowEventSchema,
  type WorkflowGraph,
  WorkflowGraphSchema,
  WorkflowNodeSchema,
  type WorkflowOutputFile,
  WorkflowOutputFileSchema,
  type WorkflowRequest,
  WorkflowRequestSchema,
} from './wire/workflows.js';
