// Validates the edge's API documents with established validators: the OpenAPI 3.1 document with
// @apidevtools/swagger-parser, the AsyncAPI 3 document with @asyncapi/parser (errors only;
// style hints are printed). Run by tests/api_docs.rs: node validate-api-docs.mjs openapi.json asyncapi.json
import { readFile } from "node:fs/promises";
import SwaggerParser from "@apidevtools/swagger-parser";
import { Parser } from "@asyncapi/parser";

const [openapiFile, asyncapiFile] = process.argv.slice(2);
if (!openapiFile || !asyncapiFile) {
  console.error("usage: node validate-api-docs.mjs openapi.json asyncapi.json");
  process.exit(2);
}
let failed = false;

const openapi = JSON.parse(await readFile(openapiFile, "utf8"));
if (openapi.openapi !== "3.1.0") {
  console.error(`openapi: version ${openapi.openapi}, want 3.1.0`);
  failed = true;
}
try {
  await SwaggerParser.validate(openapi);
  console.log("openapi: valid");
} catch (e) {
  console.error(`openapi: INVALID: ${e.message}`);
  failed = true;
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(await readFile(asyncapiFile, "utf8"));
const errors = diagnostics.filter((d) => d.severity === 0);
for (const d of diagnostics) {
  const where = (d.path ?? []).join(".");
  console.log(`asyncapi ${d.severity === 0 ? "ERROR" : "hint"} ${d.code} at ${where}: ${d.message}`);
}
if (errors.length > 0 || !document) {
  console.error(`asyncapi: INVALID (${errors.length} errors)`);
  failed = true;
} else if (document.version() !== "3.0.0") {
  console.error(`asyncapi: version ${document.version()}, want 3.0.0`);
  failed = true;
} else {
  console.log(`asyncapi: valid (${document.channels().length} channels, ${document.operations().length} operations)`);
}
process.exit(failed ? 1 : 0);
