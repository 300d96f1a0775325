// Validate AsyncAPI documents with the official parser: `node clients/validate-asyncapi.mjs FILE...`.
// Prints one JSON line per file ({file, parsed, errors, warnings}); exits 1 if any has an error.
import { Parser } from '@asyncapi/parser';
import { readFileSync } from 'node:fs';

const parser = new Parser();
let failed = 0;
for (const file of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'));
  const describe = (d) => `${d.code}: ${d.message} at ${JSON.stringify(d.path)}`;
  const errors = diagnostics.filter((d) => d.severity === 0).map(describe);
  const warnings = diagnostics.filter((d) => d.severity === 1).map(describe);
  console.log(JSON.stringify({ file, parsed: Boolean(document), errors, warnings }));
  if (!document || errors.length) failed += 1;
}
process.exit(failed ? 1 : 0);
