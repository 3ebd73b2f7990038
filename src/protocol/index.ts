/**
 * What a client program imports to speak to a hive (`import {...} from 'rbee/protocol'`): the typed
 * hive client, the wire schemas (zod) and the types inferred from them, the one parser that turns a
 * zod failure into a message naming the field, the error type with its stable codes, and the one
 * Server-Sent Events reader. Nothing here imports the hive, the CLI or an engine, so a client pulls
 * in only zod.
 */
export * from './wire.js';
export {parseWire, type FieldIssue, type ParseResult} from './parse.js';
export {isRbeeError, RbeeError, toRbeeError, type ErrorCode} from './errors.js';
export {HiveClient, type CallOptions, type EventStreamOptions, type HiveClientOptions, type StreamOptions} from './hive-client.js';
export {hiveRoutes, routePath, type HiveRoute, type HiveRouteName, type HttpMethod, type RouteParams} from './hive-routes.js';
export {readSse, SseParser, type SseEvent} from './sse-reader.js';
