//! `docs/REFERENCE.md` stays true (issue 13): every rule name and key,
//! gauge, command-line flag and config key found in the code appears in the
//! reference, and every one the reference names exists in the code.
//!
//! The rules and gauges tables are generated (`watchdog::reference`) and
//! must equal the committed ones; on drift, regenerate and commit:
//!
//! ```sh
//! REGENERATE_REFERENCE=1 cargo test -p e2e --test reference_doc
//! ```
//!
//! Flags come from clap's own `--help` of the real binaries; config keys
//! from the config parser's list of known fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::bins;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn reference() -> String {
    std::fs::read_to_string(root().join("docs/REFERENCE.md")).unwrap()
}

const REGENERATE: &str = "REGENERATE_REFERENCE=1 cargo test -p e2e --test reference_doc";

/// The text between `<!-- generated: NAME -->` and `<!-- end generated: NAME -->`.
fn block(doc: &str, name: &str) -> (usize, usize) {
    let open = format!("<!-- generated: {name} -->\n");
    let close = format!("<!-- end generated: {name} -->");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("docs/REFERENCE.md has no `{open}` marker"))
        + open.len();
    let end = doc[start..]
        .find(&close)
        .unwrap_or_else(|| panic!("docs/REFERENCE.md has no `{close}` marker"))
        + start;
    (start, end)
}

#[test]
fn the_generated_tables_are_current() {
    let mut doc = reference();
    let fresh = [
        ("rules", watchdog::reference::rules_table()),
        ("gauges", watchdog::reference::gauges_table()),
        ("schema", watchdog::reference::schema_block()),
    ];
    let mut drifted = Vec::new();
    for (name, table) in &fresh {
        let (start, end) = block(&doc, name);
        if doc[start..end] != **table {
            drifted.push(*name);
            doc.replace_range(start..end, table);
        }
    }
    if drifted.is_empty() {
        return;
    }
    if std::env::var_os("REGENERATE_REFERENCE").is_some() {
        std::fs::write(root().join("docs/REFERENCE.md"), &doc).unwrap();
        return;
    }
    panic!(
        "docs/REFERENCE.md: the {drifted:?} table(s) drifted from the code; \
         regenerate and commit: {REGENERATE}"
    );
}

/// `"watchdog_..."` string literals in the watchdog's sources.
fn gauge_literals() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut dirs = vec![
        root().join("watchdog/src"),
        root().join("watchdog-core/src"),
    ];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().map_or(true, |e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (i, _) in text.match_indices("\"watchdog_") {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                out.insert(name);
            }
        }
    }
    out
}

/// Every `watchdog_...` word in a text.
fn gauge_words(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("watchdog_") {
        if text[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/')
        {
            continue; // part of another word (a path, `run-watchdog_x`)
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

#[test]
fn every_gauge_in_the_code_is_in_the_reference_and_the_other_way_round() {
    let families = watchdog::reference::families();
    let doc = reference();
    for name in gauge_literals() {
        assert!(
            families.contains_key(&name),
            "`{name}` is in the code but no scrape shows it: feed it in watchdog::reference::families"
        );
        assert!(
            doc.contains(&format!("`{name}`")),
            "`{name}` is not in docs/REFERENCE.md; {REGENERATE}"
        );
    }
    for word in gauge_words(&doc) {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| word.strip_suffix(s))
            .filter(|b| families.contains_key(*b))
            .unwrap_or(&word);
        assert!(
            families.contains_key(base),
            "docs/REFERENCE.md names `{word}`, which the watchdog does not expose"
        );
    }
}

/// The flags of one `--help`: the options at the start of a line.
fn flags_of(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .flat_map(|l| {
            l.split([' ', ','])
                .take_while(|w| w.is_empty() || w.starts_with('-'))
                .filter(|w| w.starts_with("--"))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn help(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    assert!(out.status.success(), "{args:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_command_line_flag_is_in_the_reference_and_the_other_way_round() {
    let doc = reference();
    let mut all = BTreeSet::new();
    for (name, subcommands) in [
        (
            "watchdog",
            &["run", "check", "validate", "replay", "backtest"][..],
        ),
        ("emitter", &["serve", "snapshot"][..]),
    ] {
        let bin = bins::locate(name).unwrap();
        let top = help(&bin, &[]);
        for sub in subcommands {
            assert!(
                top.contains(&format!("  {sub} ")),
                "{name} has no {sub}:\n{top}"
            );
            assert!(
                doc.contains(&format!("{name} {sub}")),
                "docs/REFERENCE.md does not show `{name} {sub}`"
            );
            let flags = flags_of(&help(&bin, &[sub]));
            for flag in &flags {
                assert!(
                    doc.contains(&format!("{flag} "))
                        || doc.contains(&format!("{flag}`"))
                        || doc.contains(&format!("{flag}]"))
                        || doc.contains(&format!("{flag}=")),
                    "`{name} {sub} {flag}` is not in docs/REFERENCE.md"
                );
            }
            all.extend(flags);
        }
        all.extend(flags_of(&top));
    }
    // Every `--flag` the reference names is a real one (cargo's own aside).
    let ours: String = doc
        .lines()
        .filter(|l| !l.contains("cargo "))
        .collect::<Vec<_>>()
        .join("\n");
    for (i, _) in ours.match_indices("--") {
        let word: String = ours[i + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if word.is_empty() || !word.starts_with(|c: char| c.is_ascii_lowercase()) {
            continue;
        }
        let flag = format!("--{word}");
        assert!(
            all.contains(&flag),
            "docs/REFERENCE.md names `{flag}`, which no command line has ({all:?})"
        );
    }
}

#[test]
fn every_config_key_is_in_the_reference_and_the_other_way_round() {
    let doc = reference();
    let keys = watchdog::reference::config_keys();
    assert!(keys[""].contains(&"target_files".to_owned()), "{keys:?}");
    for (table, keys) in &keys {
        // The table that follows `<!-- config: TABLE -->`: its first column.
        let marker = format!("<!-- config: {table} -->\n");
        let start = doc
            .find(&marker)
            .unwrap_or_else(|| panic!("docs/REFERENCE.md has no `{marker}` table"))
            + marker.len();
        let documented: BTreeSet<String> = doc[start..]
            .lines()
            .skip(2) // header and separator
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cell = l.split('|').nth(1)?.trim();
                Some(cell.trim_matches('`').to_owned())
            })
            .collect();
        let code: BTreeSet<String> = keys.iter().cloned().collect();
        assert_eq!(
            documented, code,
            "docs/REFERENCE.md's `{table}` config table vs the parser's keys"
        );
    }
}

#[test]
fn every_rule_the_reference_describes_is_in_the_registry() {
    let doc = reference();
    let names: BTreeSet<&str> = watchdog::rules::names().collect();
    // The hand-written "what each rule watches" table: first column `rule`.
    let marker = "<!-- rules: prose -->\n";
    let start = doc.find(marker).expect("the rules prose table marker") + marker.len();
    let described: Vec<String> = doc[start..]
        .lines()
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| Some(l.split('|').nth(1)?.trim().trim_matches('`').to_owned()))
        .collect();
    assert!(!described.is_empty());
    for rule in &described {
        assert!(
            names.contains(rule.as_str()),
            "docs/REFERENCE.md describes rule `{rule}`, which the registry does not have"
        );
    }
    // And every rule's `[rules.NAME]` keys are the generated table's.
    for name in &names {
        assert!(
            doc.contains(&format!("| `{name}` |")),
            "rule `{name}` has no row; {REGENERATE}"
        );
    }
}
