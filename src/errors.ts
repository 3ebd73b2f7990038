// The error type is defined with the wire protocol (its codes cross the wire); the rest of rbee imports it from here.
export {isRbeeError, RbeeError, toRbeeError, type ErrorCode} from './protocol/errors.js';
