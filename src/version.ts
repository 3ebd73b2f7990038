/** rbee's version, read from the package's own package.json so `--version`, `/v1/status` and npm agree. */
import {createRequire} from 'node:module';

// One folder up from both src/ (tests, tsx) and dist/ (the installed package) is the package root.
const manifest = createRequire(import.meta.url)('../package.json') as {version: string};

export const rbeeVersion: string = manifest.version;
