//! The config file (TOML) beside flags and environment variables: `--config FILE` and
//! `tablewire config check FILE`. Called by main before any subcommand runs.
//!
//! One precedence order: flags > environment > file > defaults. Clap already puts flags over
//! environment variables over defaults; a file value is added as a flag only where the first
//! parse found the setting at its default (or unset), so anything given on the command line or
//! in the environment wins over the file.
//!
//! Keys are the flags' names with `_` (`nats_url`, `heartbeat_secs`; `-` is accepted too).
//! Top-level keys apply to every command that has that flag (`log` to all); a section
//! (`[edge]`, `[handler]`, `[provision]`, `[dev]`, `[transcriber]`) applies to that command
//! only and wins over the top level. A key no command (or not that section's command) knows, or
//! a value a flag would refuse, is an error: nothing starts.

use crate::cli::Cli;
use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

/// The commands a file may have a section for.
pub const SECTIONS: [&str; 5] = ["edge", "handler", "provision", "dev", "transcriber"];

/// A read config file: top-level keys and sections, values as the text a flag would take.
#[derive(Debug, Default)]
pub struct ConfigFile {
    top: BTreeMap<String, Value>,
    sections: BTreeMap<String, BTreeMap<String, Value>>,
}

/// One value: the text of a flag's value, or a switch (`true`: given, `false`: left out).
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Text(String),
    Switch(bool),
}

impl ConfigFile {
    /// Reads and checks `path`: TOML, every key a flag of a command it applies to.
    pub fn read(path: &Path) -> anyhow::Result<ConfigFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        let table: toml::Table = text.parse().context("not valid TOML")?;
        let mut file = ConfigFile::default();
        for (key, value) in table {
            if let toml::Value::Table(section) = value {
                if !SECTIONS.contains(&key.as_str()) {
                    bail!(
                        "unknown section [{key}]; known: {}",
                        SECTIONS.map(|s| format!("[{s}]")).join(", ")
                    );
                }
                let mut keys = BTreeMap::new();
                for (name, value) in section {
                    let name = name.replace('-', "_");
                    if !flags_of(&key).contains(&name) {
                        bail!(
                            "unknown key `{name}` in [{key}]: `tablewire {key}` has no such flag"
                        );
                    }
                    keys.insert(name.clone(), Value::of(&name, value)?);
                }
                file.sections.insert(key, keys);
            } else {
                let name = key.replace('-', "_");
                if name != "log" && !SECTIONS.iter().any(|s| flags_of(s).contains(&name)) {
                    bail!("unknown key `{name}`: no command has such a flag");
                }
                file.top.insert(name.clone(), Value::of(&name, value)?);
            }
        }
        Ok(file)
    }

    /// The file's values for `command`: its section over the top level, those of its flags only.
    fn values_for(&self, command: &str) -> BTreeMap<String, Value> {
        let flags = flags_of(command);
        let mut values: BTreeMap<String, Value> = self
            .top
            .iter()
            .filter(|(k, _)| flags.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(section) = self.sections.get(command) {
            values.extend(section.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        values
    }

    /// The commands this file configures: those it has a section for, else edge and handler.
    pub fn commands(&self) -> Vec<&'static str> {
        let named: Vec<&'static str> = SECTIONS
            .into_iter()
            .filter(|s| self.sections.contains_key(*s))
            .collect();
        if named.is_empty() {
            vec!["edge", "handler"]
        } else {
            named
        }
    }
}

impl Value {
    fn of(key: &str, value: toml::Value) -> anyhow::Result<Value> {
        Ok(match value {
            toml::Value::String(s) => Value::Text(s),
            toml::Value::Integer(n) => Value::Text(n.to_string()),
            toml::Value::Float(f) => Value::Text(f.to_string()),
            toml::Value::Boolean(b) => Value::Switch(b),
            toml::Value::Array(items) => Value::Text(
                items
                    .into_iter()
                    .map(|item| match item {
                        toml::Value::String(s) => Ok(s),
                        other => bail!("`{key}`: a list holds strings, not {other}"),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(","),
            ),
            other => bail!("`{key}`: {other} is not a flag's value"),
        })
    }
}

/// The argument ids (field names) of `tablewire <command>`.
fn flags_of(command: &str) -> Vec<String> {
    Cli::command()
        .find_subcommand(command)
        .map(|c| {
            c.get_arguments()
                .filter(|a| !a.is_positional())
                .map(|a| a.get_id().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the setting `id` came from nowhere but its default.
fn defaulted(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .and(matches.value_source(id)),
        None | Some(ValueSource::DefaultValue)
    )
}

/// `argv` (the program name first, then `command` and its flags) with the file's values added
/// where neither a flag nor the environment set one; returns it and the keys taken from the
/// file. Fails with clap's message when `argv` itself does not parse.
pub fn with_file(
    argv: &[OsString],
    command: &str,
    file: &ConfigFile,
) -> anyhow::Result<(Vec<OsString>, Vec<String>)> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let Some(at) = argv.iter().position(|a| a.to_str() == Some(command)) else {
        bail!("no `{command}` in the command line");
    };
    let sub = matches
        .subcommand_matches(command)
        .context("the command line names another command")?;
    let mut taken = Vec::new();
    let mut added = Vec::new();
    for (key, value) in file.values_for(command) {
        if !defaulted(sub, &key) {
            continue;
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            Value::Text(text) => added.push(OsString::from(format!("{flag}={text}"))),
            Value::Switch(true) => added.push(OsString::from(flag)),
            Value::Switch(false) => {}
        }
        taken.push(key);
    }
    let mut out: Vec<OsString> = argv[..=at].to_vec();
    // The global `log`, before the command.
    if let Some(Value::Text(log)) = file.top.get("log")
        && defaulted(&matches, "log")
    {
        out.insert(1, OsString::from(format!("--log={log}")));
        taken.push("log".to_string());
    }
    out.extend(added);
    out.extend(argv[at + 1..].iter().cloned());
    Ok((out, taken))
}

/// The settings `tablewire <argv>` would run with, one `key = value  # source` line each
/// (secrets shown as set or not), under a `[command]` header.
pub fn effective(argv: &[OsString], command: &str, from_file: &[String]) -> anyhow::Result<String> {
    let matches = Cli::command()
        .try_get_matches_from(argv)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let sub = matches
        .subcommand_matches(command)
        .context("the command line names another command")?;
    let cli = Cli::command();
    let Some(spec) = cli.find_subcommand(command) else {
        bail!("unknown command {command}");
    };
    let mut out = format!("[{command}]\n");
    for arg in spec.get_arguments().filter(|a| !a.is_positional()) {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" || id == "config" {
            continue;
        }
        let source = if from_file.iter().any(|k| k == id) {
            "file"
        } else {
            match sub.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "default (unset)",
            }
        };
        let values: Vec<String> = sub
            .try_get_raw(id)
            .ok()
            .flatten()
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        if values.is_empty() {
            out.push_str(&format!("# {id} unset\n"));
            continue;
        }
        let shown = if id.contains("secret") || id.contains("api_key") {
            "\"(set)\"".to_string()
        } else if values.len() == 1 && is_bare(&values[0]) {
            values[0].clone()
        } else {
            toml::Value::String(values.join(",")).to_string()
        };
        out.push_str(&format!("{id} = {shown}  # {source}\n"));
    }
    Ok(out)
}

/// Whether `text` can stand unquoted in TOML (a number or a boolean).
fn is_bare(text: &str) -> bool {
    text.parse::<i64>().is_ok() || text.parse::<f64>().is_ok() || text == "true" || text == "false"
}

/// `argv` as parsed with `--config FILE` applied: the file's values added where neither a flag
/// nor the environment set one. Commands without a section kind (`token`, `bench`, `config`)
/// ignore the file. Exits as clap does on `--help` and on bad flags.
pub fn parse(argv: Vec<OsString>) -> anyhow::Result<Cli> {
    use clap::Parser;
    let cli = Cli::parse_from(&argv);
    let Some(path) = cli.config.clone() else {
        return Ok(cli);
    };
    let matches = Cli::command().get_matches_from(&argv);
    let Some(command) = matches.subcommand_name().filter(|c| SECTIONS.contains(c)) else {
        return Ok(cli);
    };
    let file = ConfigFile::read(&path)?;
    let (argv, _) = with_file(&argv, command, &file)?;
    Cli::try_parse_from(&argv)
        .map_err(|e| anyhow::anyhow!("with the settings of {}: {}", path.display(), e.render()))
}

/// `tablewire config check FILE [COMMAND FLAGS…]`: reads and validates FILE, then prints the
/// settings COMMAND would run with (every command the file has a section for when none is
/// named), each with where it came from. Fails on an unknown key or a value a flag refuses.
pub fn check(path: &Path, command_line: &[String]) -> anyhow::Result<()> {
    let file = ConfigFile::read(path)?;
    let runs: Vec<Vec<String>> = if command_line.is_empty() {
        file.commands()
            .into_iter()
            .map(|c| vec![c.to_string()])
            .collect()
    } else {
        vec![command_line.to_vec()]
    };
    for run in runs {
        let command = run[0].clone();
        if !SECTIONS.contains(&command.as_str()) {
            bail!(
                "`{command}` takes no config file; one of: {}",
                SECTIONS.join(", ")
            );
        }
        let argv: Vec<OsString> = std::iter::once("tablewire".to_string())
            .chain(run)
            .map(OsString::from)
            .collect();
        let (full, taken) = with_file(&argv, &command, &file)?;
        Cli::command()
            .try_get_matches_from(&full)
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.render()))?;
        println!("{}", effective(&full, &command, &taken)?);
    }
    println!("# {}: valid", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(args: &[&str]) -> Vec<OsString> {
        std::iter::once("tablewire")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect()
    }

    #[test]
    fn unknown_keys_and_sections_are_refused() {
        let err = ConfigFile::parse("heartbeat_sec = 3").expect_err("unknown key");
        assert!(err.to_string().contains("heartbeat_sec"), "{err}");
        let err = ConfigFile::parse("[edge]\nbatch_size = 3").expect_err("not an edge flag");
        assert!(err.to_string().contains("batch_size"), "{err}");
        assert!(ConfigFile::parse("[edges]\nlisten = \"x\"").is_err());
    }

    #[test]
    fn a_flag_wins_over_the_file_and_the_section_over_the_top_level() {
        let file = ConfigFile::parse(
            "heartbeat_secs = 7\ncors_origin = \"top\"\n[edge]\ncors_origin = \"edge\"\nno_records = true",
        );
        assert!(file.is_err(), "no_records is no edge flag");
        let file = ConfigFile::parse(
            "heartbeat_secs = 7\ncors_origin = \"top\"\ndrain_timeout_secs = 3\n[edge]\ncors_origin = \"edge\"",
        )
        .expect("valid");
        let (out, taken) = with_file(&argv(&["edge", "--drain-timeout-secs", "9"]), "edge", &file)
            .expect("parses");
        let text: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(text.contains(&"--heartbeat-secs=7".to_string()), "{text:?}");
        assert!(text.contains(&"--cors-origin=edge".to_string()), "{text:?}");
        assert!(
            !taken.contains(&"drain_timeout_secs".to_string()),
            "{taken:?}"
        );
    }
}
