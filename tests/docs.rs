//! The README stays true to the code: every catalogue error is listed with its number and
//! HTTP status.

use tablewire_schemas::ErrorCode;

#[test]
fn readme_lists_every_error_code() {
    let readme = include_str!("../README.md");
    for code in ErrorCode::ALL {
        let row = format!(
            "| `{}` | {} | {} | {} |",
            code.name(),
            code.number(),
            code.http_status(),
            if code.retryable() { "yes" } else { "no" }
        );
        assert!(readme.contains(&row), "README.md is missing the row {row}");
    }
}
