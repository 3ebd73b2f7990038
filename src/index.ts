// The package's public entry: what a config file or a client program imports.
export {defineConfig, type UserConfig} from './config/schema.js';
export {RbeeError, type ErrorCode} from './errors.js';
