// Parses DTDL files with the real DTDL parser (Microsoft's DTDLParser, installed by
// scripts/setup-dtdl-parser.sh) and prints what it understood, for tests to compare with what
// was generated. All files are parsed in one call, so references between them resolve.
//
//   node scripts/dtdl-parse.mjs <modelParser.js> <file or directory>...
//
// Exit 0 and on stdout {"parser": version, "interfaces": {dtmi: {extends, properties: {name:
// schema}, relationships: {name: target|null}, components: {name: schema}}}} (own contents
// only, not inherited); exit 1 with the parser's errors on stderr when it rejects the models;
// exit 2 for bad usage or unreadable files.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [modulePath, ...inputs] = process.argv.slice(2);
if (!modulePath || inputs.length === 0) {
  console.error('usage: dtdl-parse.mjs <modelParser.js> <file or directory>...');
  process.exit(2);
}
const files = [];
for (const input of inputs) {
  if (fs.statSync(input).isDirectory()) {
    for (const f of fs.readdirSync(input).sort()) {
      if (f.endsWith('.json')) files.push(path.join(input, f));
    }
  } else {
    files.push(input);
  }
}
const models = [];
for (const f of files) {
  let v;
  try {
    v = JSON.parse(fs.readFileSync(f, 'utf-8'));
  } catch (e) {
    console.error(`${f}: not JSON: ${e}`);
    process.exit(2);
  }
  models.push(...(Array.isArray(v) ? v : [v]));
}

const parser = await import(pathToFileURL(modulePath).href);
const version = parser.parserVersion();
// The interop must be Microsoft's DTDLParser assembly, not some other validator.
if (!version.startsWith('DTDLParser,')) {
  console.error(`unexpected parser: ${version}`);
  process.exit(2);
}
let parsed;
try {
  parsed = JSON.parse(parser.parse(JSON.stringify(models)));
} catch (e) {
  const message = typeof e === 'object' && e && 'message' in e ? e.message : String(e);
  process.stderr.write(message + '\n', () => process.exit(1));
  await new Promise(() => {}); // until the write's callback exits
}
const primitive = (s) => (s ?? '').replace(/^dtmi:dtdl:instance:Schema:(\w+);\d+$/, '$1');
const interfaces = {};
for (const [id, e] of Object.entries(parsed)) {
  if (e.EntityKind !== 'Interface') continue;
  const own = (kind) =>
    Object.values(e.contents)
      .map((cid) => parsed[cid])
      .filter((c) => c && c.EntityKind === kind && c.DefinedIn === id);
  interfaces[id] = {
    extends: e.extends,
    properties: Object.fromEntries(own('Property').map((p) => [p.name, primitive(p.schema)])),
    relationships: Object.fromEntries(own('Relationship').map((r) => [r.name, r.target])),
    components: Object.fromEntries(own('Component').map((c) => [c.name, c.schema])),
  };
}
// The .NET runtime keeps the event loop alive for seconds after the work is done, so exit,
// but only once stdout is flushed (a pipe is written asynchronously).
process.stdout.write(JSON.stringify({ parser: version, models: models.length, interfaces }) + '\n', () =>
  process.exit(0),
);
