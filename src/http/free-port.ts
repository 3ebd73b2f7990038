import net from 'node:net';

/** Asks the OS for a free loopback port. The worker binds it moments later, as Ollama does for its runners. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen({host, port: 0}, () => {
      const address = server.address();
      server.close(() => {
        if (address === null || typeof address === 'string') {
          reject(new Error('could not read the allocated port'));
        } else {
          resolve(address.port);
        }
      });
    });
  });
}

/** Whether a loopback port can be bound now: a fixed port asked for is checked before anything starts on it. */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise(resolve => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({host, port}, () => server.close(() => resolve(true)));
  });
}
