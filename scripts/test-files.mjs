// What scripts/run-tests.mjs needs to know about test files: which ones form the fast unit loop, and
// how to count one ava run's results from its default reporter.
import fs from 'node:fs';
import path from 'node:path';

/**
 * Imports that mark an integration test: it starts real processes (hive, workers, engines) or needs
 * the prepared assets (the real test model, llama-server, the native engine). Every other test file
 * is a unit test and belongs to `npm run test:unit`.
 */
const integrationMarkers = [
  /helpers\/test-model/,
  /helpers\/rbee-process/,
  /helpers\/process-tree/,
  /native-helpers/,
  // Shared suites and modules that start processes themselves.
  /agreement-suite/,
  /adapters\/engine-process/,
  /from 'node:child_process'/,
  /from 'execa'/,
];

export function isIntegrationTest(source) {
  return integrationMarkers.some(marker => marker.test(source));
}

/** Test files (relative to root, sorted) under test/, fixtures excluded. */
export function testFiles(root) {
  const found = [];
  const walk = dir => {
    for (const entry of fs.readdirSync(path.join(root, dir), {withFileTypes: true})) {
      const relative = `${dir}/${entry.name}`;
      if (entry.isDirectory() && entry.name !== 'fixtures') {
        walk(relative);
      } else if (/\.test\.tsx?$/.test(entry.name)) {
        found.push(relative);
      }
    }
  };
  walk('test');
  return found.sort();
}

export function unitTestFiles(root) {
  return testFiles(root).filter(file => !isIntegrationTest(fs.readFileSync(path.join(root, file), 'utf8')));
}

/**
 * Counts one ava run (one file, default reporter, no colours). Its per-test lines sit two spaces in:
 * `✔ title`, `✔ [expected fail] title`, `✘ [fail]: title …`, `- [skip] title`, `- [todo] title`, and
 * after an inactivity timeout `◌ title` for each test still pending (counted as failed); any other
 * `✘ …` line is a file-level crash (one failure). Everything
 * after the `─` rule is failure detail and is not read. Logs (`ℹ`) sit deeper and never match.
 */
export function parseAvaOutput(output) {
  const counts = {pass: 0, fail: 0, skip: 0, failed: []};
  for (const line of output.split('\n')) {
    if (/^ {2}─\s*$/.test(line)) {
      break;
    }
    let match;
    if ((match = /^ {2}✔ (.*)$/.exec(line))) {
      counts.pass += 1;
    } else if ((match = /^ {2}✘ \[fail\]: (.*)$/.exec(line))) {
      counts.fail += 1;
      counts.failed.push(match[1]);
    } else if (/^ {2}- \[(skip|todo)\] /.test(line)) {
      counts.skip += 1;
    } else if ((match = /^ {2}◌ (.*)$/.exec(line))) {
      counts.fail += 1;
      counts.failed.push(`${match[1]} (pending at ava's timeout)`);
    } else if ((match = /^ {2}(Uncaught exception|Unhandled rejection) in (.*)$/.exec(line))) {
      counts.fail += 1;
      counts.failed.push(`${match[1].toLowerCase()} in ${match[2]}`);
    } else if ((match = /^ {2}✘ (?!\[fail\]|Timed out while running tests)(.*)$/.exec(line))) {
      // A file-level crash (exited with a code or signal, internal error, no tests found): one failure.
      counts.fail += 1;
      counts.failed.push(match[1]);
    } else if ((match = /^ {2}(Failed to exit when running .*)$/.exec(line))) {
      counts.fail += 1;
      counts.failed.push(match[1]);
    }
  }
  return counts;
}

/**
 * What ava printed about a file's failures (assertion, reason, stack): the lines between the first
 * "─" rule, which ends the per-test lines, and the last. At most `maxLines` lines of at most 240
 * characters: a test's message may carry a whole engine log, and the summary must stay readable.
 */
export function failureDetails(output, maxLines = 60) {
  const lines = output.split('\n');
  const rules = lines.flatMap((line, index) => (/^ {2}─\s*$/.test(line) ? [index] : []));
  if (rules.length < 2) {
    return [];
  }
  const section = lines.slice(rules[0] + 1, rules.at(-1)).map(line => (line.length > 240 ? `${line.slice(0, 240)}…` : line));
  while (section.length > 0 && section[0].trim() === '') {
    section.shift();
  }
  while (section.length > 0 && section.at(-1).trim() === '') {
    section.pop();
  }
  return section.length > maxLines ? [...section.slice(0, maxLines), `  … ${section.length - maxLines} more lines in the file's own output above`] : section;
}

/**
 * The order to start files in: longest first by the seconds each took last time (`durations`, file →
 * seconds), so that with a few files at a time the slow real-engine files do not start last and run
 * alone at the end. Files with no record (new ones, a first run) go first, in the given order:
 * they may be slow, and a fresh machine keeps the alphabetical order.
 */
export function orderByDuration(files, durations) {
  const known = files.filter(file => Number.isFinite(durations[file]));
  const unknown = files.filter(file => !Number.isFinite(durations[file]));
  return [...unknown, ...known.sort((a, b) => durations[b] - durations[a])];
}

/** Recorded durations (file → seconds) from `file`; none when it is missing or unreadable. */
export function readDurations(file) {
  try {
    const parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return {};
    return Object.fromEntries(Object.entries(parsed).filter(([, seconds]) => typeof seconds === 'number' && Number.isFinite(seconds) && seconds >= 0));
  } catch {
    return {};
  }
}

/** Merges `measured` into the record in `file` (owner-only: it sits in the user's cache). */
export function writeDurations(file, measured) {
  const merged = {...readDurations(file), ...measured};
  fs.mkdirSync(path.dirname(file), {recursive: true, mode: 0o700});
  const temporary = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temporary, `${JSON.stringify(merged, null, 1)}\n`, {mode: 0o600});
  fs.renameSync(temporary, file);
}
