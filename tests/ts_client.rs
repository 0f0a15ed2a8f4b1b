//! The TypeScript client (`clients/js`, `@tablewire/client`): runs its `npm test`, which checks
//! that the generated types match `schemas/json`, compiles it, and runs its Node test-runner
//! tests — the core without a server, then against a real `tablewire dev` the tests start from
//! this build's binary (a socket killed mid-stream, an edge restarted under queued POS orders,
//! the HTTP fallback, an expiring token, a room), and the screens (`clients/app`) in headless
//! Chromium. Needs Node >= 18, `npm ci --prefix clients/js` and a Chromium
//! (`scripts/install-chromium`); scripts/test sees to all three.

use std::path::Path;
use std::process::Command;

#[test]
fn typescript_client_and_screens_tests_pass_against_a_real_dev() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    for package in [
        "typescript",
        "json-schema-to-typescript",
        "ws",
        "playwright-core",
    ] {
        assert!(
            dir.join("node_modules").join(package).is_dir(),
            "the npm package {package} is missing: run `npm ci --prefix clients/js` (scripts/test does)"
        );
    }
    let output = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&dir)
        .env("TABLEWIRE_BIN", env!("CARGO_BIN_EXE_tablewire"))
        .output()
        .expect("npm runs (Node 18 or newer with npm is required)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "clients/js `npm test` failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(stdout.contains("# fail 0"), "no test summary:\n{stdout}");
}
