#!/usr/bin/env node
// ollana's entry for `node bin/ollana.mjs ...` (any Node), and what bin/ollana runs in Node 24 on
// Linux and macOS. bin/launcher.mjs picks the build or the sources and gets them into Node 24: in
// this process when it is Node 24, by exec where the running Node can, else as a child process.
import { launch } from './launcher.mjs';

await launch(process.argv.slice(2));
