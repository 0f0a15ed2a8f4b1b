// Compiles the client into clients/app/lib/ (plain ES modules the screens import, so the edge
// can embed clients/app as it is, with no Node at build time). `--check` compiles into a temp
// dir and fails when clients/app/lib differs: `npm test` runs it.
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const target = join(root, "..", "app", "lib");
const check = process.argv.includes("--check");
const tsc = join(root, "node_modules", "typescript", "bin", "tsc");

const compile = (outDir) =>
  execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--outDir", outDir, "--declaration", "false"], {
    stdio: "inherit",
  });

async function files(dir) {
  const found = new Map();
  const walk = async (at) => {
    for (const entry of await readdir(at, { withFileTypes: true }).catch(() => [])) {
      const path = join(at, entry.name);
      if (entry.isDirectory()) await walk(path);
      else found.set(relative(dir, path), await readFile(path, "utf8"));
    }
  };
  await walk(dir);
  return found;
}

if (!check) {
  await rm(target, { recursive: true, force: true });
  compile(target);
  console.log("compiled the client into clients/app/lib");
} else {
  const temp = await mkdtemp(join(tmpdir(), "tablewire-app-lib-"));
  try {
    compile(temp);
    const [fresh, current] = [await files(temp), await files(target)];
    const differ = [...new Set([...fresh.keys(), ...current.keys()])].filter((f) => fresh.get(f) !== current.get(f));
    if (differ.length) {
      console.error(`clients/app/lib is stale (${differ.join(", ")}): run \`npm run build:app --prefix clients/js\` and commit it.`);
      process.exit(1);
    }
    console.log(`clients/app/lib matches the client (${fresh.size} files)`);
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}
