import type {ServerResponse} from 'node:http';

/**
 * An AbortSignal that fires when the client closes the connection before the response is
 * finished, so generation for a vanished client stops instead of burning the device.
 */
export function clientGoneSignal(response: ServerResponse): AbortSignal {
  const controller = new AbortController();
  response.on('close', () => {
    if (!response.writableFinished) {
      controller.abort(new Error('client closed the connection'));
    }
  });
  return controller.signal;
}
