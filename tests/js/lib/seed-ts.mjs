// Loads a seed's TypeScript client exactly as the seed document has it: the TypeScript
// compiler strips its types, and the only things given to it are its connection URL (put in
// place of the seed's own URL literal, which must appear exactly once) and what the seed leaves
// to the app around it (e.g. `getToken`). Used by events.mjs for seed 004's RestaurantWebSocket.
import { readFileSync } from "node:fs";
import ts from "typescript";

/**
 * Returns the class `name` of the TypeScript file `path`, with `seedUrl` replaced by `url` and
 * `prelude` (JavaScript) placed before it.
 */
export async function loadSeedClass(path, name, { seedUrl, url, prelude = "" }) {
  const source = readFileSync(path, "utf8");
  const places = source.split(seedUrl).length - 1;
  if (places !== 1) throw new Error(`${path}: the seed URL ${seedUrl} appears ${places} times`);
  const { outputText, diagnostics } = ts.transpileModule(source.replace(seedUrl, JSON.stringify(url)), {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
    reportDiagnostics: true,
  });
  if (diagnostics?.length) throw new Error(`${path}: ${diagnostics.map((d) => d.messageText).join("; ")}`);
  const module = `${prelude}\n${outputText}\nexport { ${name} };\n`;
  const loaded = await import(`data:text/javascript,${encodeURIComponent(module)}`);
  return loaded[name];
}
