// Validates each OpenRPC document named on the command line with the official validator
// (@open-rpc/schema-utils-js, against @open-rpc/meta-schema). Prints one line per document;
// exits 1 when any is not valid.
import { readFileSync } from "node:fs";
import { validateOpenRPCDocument } from "@open-rpc/schema-utils-js";

let failed = false;
for (const path of process.argv.slice(2)) {
  const document = JSON.parse(readFileSync(path, "utf8"));
  const result = validateOpenRPCDocument(document);
  if (result === true) {
    console.log(`valid: ${path}`);
  } else {
    failed = true;
    console.log(`invalid: ${path}: ${result.message ?? result}`);
  }
}
process.exit(failed ? 1 : 0);
