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

/// The commands whose flags the README's "Configuration" table lists.
const COMMANDS: [&str; 6] = [
    "edge",
    "handler",
    "provision",
    "dev",
    "token",
    "transcriber",
];

/// One flag as `tablewire <command> --help` shows it.
struct HelpFlag {
    name: String,
    env: Option<String>,
    default: Option<String>,
}

fn help_flags(command: &str) -> Vec<HelpFlag> {
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_tablewire"));
    run.args([command, "--help"]);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("TABLEWIRE_")) {
        run.env_remove(name);
    }
    let out = run.output().expect("run tablewire");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut flags: Vec<HelpFlag> = Vec::new();
    let mut block = String::new();
    let finish = |flags: &mut Vec<HelpFlag>, block: &str| {
        let Some(flag) = flags.last_mut() else { return };
        let between = |open: &str, close: char| {
            block
                .split_once(open)
                .and_then(|(_, rest)| rest.split_once(close))
                .map(|(value, _)| value.to_string())
        };
        flag.env = between("[env: ", '=');
        flag.default = between("[default: ", ']');
    };
    for line in help.lines() {
        let trimmed = line.trim_start();
        let long = trimmed
            .strip_prefix("-")
            .filter(|_| line.starts_with("  "))
            .and_then(|_| trimmed.split_whitespace().find(|w| w.starts_with("--")));
        if let Some(long) = long {
            finish(&mut flags, &block);
            block.clear();
            let name = long.trim_end_matches(',').to_string();
            flags.push(HelpFlag {
                name,
                env: None,
                default: None,
            });
        }
        block.push_str(line);
        block.push('\n');
    }
    finish(&mut flags, &block);
    flags.retain(|f| f.name != "--help" && f.name != "--version");
    flags
}

/// The rows of the README's "Configuration" table: flags, environment cell, default cell, the
/// commands that use them.
fn readme_flag_rows() -> Vec<(Vec<String>, String, String, Vec<String>)> {
    let readme = include_str!("../README.md");
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("a Configuration section")
        .1;
    let section = section.split_once("\n## ").map_or(section, |(s, _)| s);
    section
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "four cells: {line}");
            let flags = cells[0]
                .split(", ")
                .map(|f| f.trim_matches('`').to_string())
                .collect();
            let users = cells[3].split(", ").map(str::to_string).collect();
            (flags, cells[1].to_string(), cells[2].to_string(), users)
        })
        .collect()
}

#[test]
fn readme_configuration_table_matches_help() {
    let rows = readme_flag_rows();
    for command in COMMANDS {
        let flags = help_flags(command);
        assert!(!flags.is_empty(), "{command} --help lists flags");
        for flag in &flags {
            let row = rows
                .iter()
                .find(|(names, ..)| names.contains(&flag.name))
                .unwrap_or_else(|| {
                    panic!("README's Configuration lacks {} ({command})", flag.name)
                });
            let (_, env, default, users) = row;
            assert!(
                users.iter().any(|u| u == command || u == "all"),
                "README: {} is used by {command} too",
                flag.name
            );
            if let Some(name) = &flag.env {
                assert!(
                    env.contains(&format!("`{name}`")),
                    "README: {} reads {name}",
                    flag.name
                );
            }
            if let Some(value) = &flag.default {
                assert!(
                    default.contains(value.as_str()),
                    "README: {}'s default is {value} ({command}), not {default}",
                    flag.name
                );
            }
        }
        for (names, _, _, users) in &rows {
            if users.iter().any(|u| u == command) {
                for name in names {
                    assert!(
                        flags.iter().any(|f| &f.name == name),
                        "README says {command} takes {name}; its --help does not list it"
                    );
                }
            }
        }
    }
}
