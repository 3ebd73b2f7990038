/**
 * Resident memory of an engine that is a tree of processes (trtllm-serve runs its executor in
 * worker processes it starts), from /proc. Linux only; elsewhere the figure is simply absent.
 */
import fs from 'node:fs';
import {processRss} from 'rbee';

function parentOf(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** `root` and every live descendant of it. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  let names: string[] = [];
  try {
    names = fs.readdirSync('/proc').filter(name => /^\d+$/.test(name));
  } catch {
    // no /proc: the root alone
  }
  for (const name of names) {
    const parent = parentOf(Number(name));
    if (parent !== null) {
      children.set(parent, [...(children.get(parent) ?? []), Number(name)]);
    }
  }
  const found = [root];
  for (let index = 0; index < found.length; index++) {
    found.push(...(children.get(found[index]!) ?? []));
  }
  return found;
}

/** Resident memory of `root` and its descendants, in bytes; undefined where /proc cannot be read. */
export async function processTreeRss(root: number): Promise<number | undefined> {
  const sizes = await Promise.all(processTree(root).map(pid => processRss(pid)));
  const known = sizes.filter((size): size is number => size !== undefined);
  return known.length === 0 ? undefined : known.reduce((sum, size) => sum + size, 0);
}
