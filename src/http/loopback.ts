/** Loopback addresses: what the hive may bind without a token, and hives whose processes and files are on this machine. */

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export function isLoopbackUrl(url: string): boolean {
  try {
    return isLoopback(new URL(url).hostname.replace(/^\[|\]$/g, ''));
  } catch {
    return false;
  }
}
