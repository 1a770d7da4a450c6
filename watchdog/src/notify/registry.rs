//! The registry of sink kinds: what `[notify]` needs from each kind
//! ([`SinkConfig`]), and the `sink_kinds!` macro that turns one line per
//! kind into its module, its field of [`super::NotifyConfig`] and its
//! place in checking, anchoring and starting.
//!
//! A new kind of sink is one new file, `notify/<kind>.rs` (or a folder
//! `notify/<kind>/` when it needs more than one), holding its
//! table (a type that implements [`SinkConfig`]) and its
//! [`super::Sink`], plus one line of the `sink_kinds!` call in
//! `notify/mod.rs`. The test at the end of this file counts that.

use std::path::Path;

use super::delivery::Delivery;
use super::group::Grouping;
use super::sink::Sink;
use crate::exporter::Exporter;

/// One table of a kind of sink (`[[notify.<kind>]]` or `[notify.<kind>]`),
/// as parsed; object safe, so the registry can walk every kind alike.
pub trait SinkConfig {
    /// The names of the sinks this table starts (one, or one per URL),
    /// `index` being its place among its kind's tables.
    fn names(&self, index: usize) -> Vec<String>;

    /// Checks what serde cannot (URLs, secrets read from files, sizes,
    /// `tls_config` files), naming the table and the key.
    fn validate(&self, index: usize) -> anyhow::Result<()>;

    /// Takes relative `tls_config` paths from `base`, the config file's
    /// directory.
    fn anchor_tls(&mut self, base: &Path);

    /// Builds the sinks of this table, in the order of [`SinkConfig::names`].
    fn start(&self, index: usize, exporter: &Exporter) -> anyhow::Result<Vec<Started>>;

    /// A minimal table body that parses, for the reference's key probe.
    fn example() -> &'static str
    where
        Self: Sized;
}

/// A sink built from its table, before its queue and worker are spawned.
pub struct Started {
    /// Its name in metrics and `dropped` lines.
    pub name: String,
    /// The sink.
    pub sink: Box<dyn Sink>,
    /// Events it may have waiting.
    pub capacity: usize,
    /// Its grouping keys; `None` for a receiver that groups by itself.
    pub grouping: Option<Grouping>,
}

impl Started {
    /// The one sink of a table that starts one (a webhook, a Slack or a
    /// PagerDuty table), queued and grouped as its table says.
    pub fn one(
        name: String,
        sink: impl Sink + 'static,
        delivery: &Delivery,
        grouping: &Grouping,
    ) -> anyhow::Result<Vec<Started>> {
        Ok(vec![Started {
            name,
            sink: Box::new(sink),
            capacity: delivery.queue,
            grouping: Some(grouping.clone()),
        }])
    }
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("grouping", &self.grouping)
            .finish_non_exhaustive()
    }
}

/// How a kind's tables sit in `[notify]`: an array of tables (`Vec`) or
/// one table (`Option`).
pub trait SinkTables {
    /// Whether `[[notify.<kind>]]` (many) rather than `[notify.<kind>]`.
    const MANY: bool;
    /// A minimal body of one table.
    fn example() -> &'static str;
    /// The tables given.
    fn tables(&self) -> Vec<&dyn SinkConfig>;
    /// The tables given, to change.
    fn tables_mut(&mut self) -> Vec<&mut dyn SinkConfig>;
    /// No table given: nothing printed by `--print-config`.
    fn is_empty(&self) -> bool;
}

/// Many tables or at most one, seen alike as a slice.
pub trait TableSlice {
    /// The table's type.
    type Table: SinkConfig;
    /// Whether `[[notify.<kind>]]` (many) rather than `[notify.<kind>]`.
    const MANY: bool;
    /// The tables given.
    fn slice(&self) -> &[Self::Table];
    /// The tables given, to change.
    fn slice_mut(&mut self) -> &mut [Self::Table];
}

impl<T: SinkConfig> TableSlice for Vec<T> {
    type Table = T;
    const MANY: bool = true;
    fn slice(&self) -> &[T] {
        self
    }
    fn slice_mut(&mut self) -> &mut [T] {
        self
    }
}

impl<T: SinkConfig> TableSlice for Option<T> {
    type Table = T;
    const MANY: bool = false;
    fn slice(&self) -> &[T] {
        self.as_slice()
    }
    fn slice_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<C: TableSlice> SinkTables for C {
    const MANY: bool = <C as TableSlice>::MANY;
    fn example() -> &'static str {
        C::Table::example()
    }
    fn tables(&self) -> Vec<&dyn SinkConfig> {
        self.slice().iter().map(|t| t as &dyn SinkConfig).collect()
    }
    fn tables_mut(&mut self) -> Vec<&mut dyn SinkConfig> {
        self.slice_mut()
            .iter_mut()
            .map(|t| t as &mut dyn SinkConfig)
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.slice().is_empty()
    }
}

/// One kind in the registry, for the reference and its tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The key under `[notify]`, also the module's name.
    pub name: &'static str,
    /// Whether its tables are an array (`[[notify.<name>]]`).
    pub many: bool,
    /// A minimal table body that parses.
    pub example: &'static str,
    /// The Rust type of one table.
    pub config_type: &'static str,
}

impl Kind {
    /// The table's header as written in a config file.
    pub fn header(&self) -> String {
        if self.many {
            format!("[[notify.{}]]", self.name)
        } else {
            format!("[notify.{}]", self.name)
        }
    }
}

/// Declares the kinds of sinks, one `name: Vec<Config>` (many tables) or
/// `name: Option<Config>` (at most one) per line, in the order
/// `--print-config` prints them. For each it declares `pub mod name;` and
/// the field `name` of the generated [`super::NotifyConfig`], and it lists
/// them in [`super::NotifyConfig::sink_kinds`] and
/// [`super::NotifyConfig::tables`], through which they are checked,
/// anchored and started.
macro_rules! sink_kinds {
    ($($name:ident: $tables:ty,)+) => {
        $(pub mod $name;)+

        /// `[notify]` (CONTRACT.md section 5): how often firing alerts
        /// repeat, and the tables of each kind of sink.
        #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct NotifyConfig {
            /// How often a firing alert is repeated in the log and to sinks.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub repeat_interval: Option<crate::dur::Dur>,
            $(
                #[doc = concat!("`notify.", stringify!($name), "`: see [`", stringify!($name), "`].")]
                #[serde(default, skip_serializing_if = "crate::notify::registry::SinkTables::is_empty")]
                pub $name: $tables,
            )+
        }

        impl NotifyConfig {
            /// Every kind of sink, in registry order.
            pub fn sink_kinds() -> Vec<crate::notify::registry::Kind> {
                use crate::notify::registry::{Kind, SinkTables};
                vec![$(Kind {
                    name: stringify!($name),
                    many: <$tables as SinkTables>::MANY,
                    example: <$tables as SinkTables>::example(),
                    config_type: std::any::type_name::<$tables>(),
                },)+]
            }

            /// Every kind's name and its tables, in registry order.
            pub fn tables(&self) -> Vec<(&'static str, Vec<&dyn crate::notify::registry::SinkConfig>)> {
                use crate::notify::registry::SinkTables;
                vec![$((stringify!($name), self.$name.tables()),)+]
            }

            /// Every kind's name and its tables, to change.
            pub fn tables_mut(&mut self) -> Vec<(&'static str, Vec<&mut dyn crate::notify::registry::SinkConfig>)> {
                use crate::notify::registry::SinkTables;
                vec![$((stringify!($name), self.$name.tables_mut()),)+]
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::super::NotifyConfig;

    fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }

    /// The code lines of a file: its comments and its `#[cfg(test)]`
    /// module (always last) left out.
    fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
        text.lines()
            .enumerate()
            .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
            .filter(|(_, l)| !l.trim_start().starts_with("//"))
    }

    /// Whether `line` names the kind: its module (`slack::`), its field of
    /// `NotifyConfig` (`.slack`), its table (`notify.slack`) or its config type.
    fn names_kind(line: &str, kind: &str, config_type: &str) -> bool {
        let word_after = |at: usize| {
            !line[at..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        let word_before = |at: usize| {
            !line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        };
        line.match_indices(kind).any(|(at, _)| {
            let end = at + kind.len();
            let module = line[end..].starts_with("::") && word_before(at);
            let field = line[..at].ends_with('.') && word_after(end);
            module || field
        }) || line
            .match_indices(config_type)
            .any(|(at, _)| word_before(at) && word_after(at + config_type.len()))
    }

    #[test]
    fn a_sink_is_one_file_and_one_registry_line() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let registry = src.join("notify").join("mod.rs");
        let kinds = NotifyConfig::sink_kinds();
        assert_eq!(
            kinds.iter().map(|k| k.name).collect::<Vec<_>>(),
            ["webhook", "alertmanager", "slack", "pagerduty"]
        );
        for kind in &kinds {
            // Its file, or its folder when it needs more than one.
            let file = src.join("notify").join(format!("{}.rs", kind.name));
            let folder = src.join("notify").join(kind.name);
            assert!(
                file.is_file() || folder.join("mod.rs").is_file(),
                "{} has neither {} nor {}/mod.rs",
                kind.name,
                file.display(),
                folder.display()
            );
            let own = |path: &Path| path == file || path.starts_with(&folder);
            let config_type = kind
                .config_type
                .rsplit("::")
                .next()
                .unwrap()
                .trim_end_matches('>');
            let places: Vec<String> = files
                .iter()
                .filter(|(path, _)| !own(path))
                .flat_map(|(path, text)| {
                    code_lines(text)
                        .filter(|(_, l)| names_kind(l, kind.name, config_type))
                        .map(move |(n, l)| format!("{}:{}: {}", path.display(), n + 1, l.trim()))
                })
                .collect();
            let line = format!("{}: ", kind.name);
            assert!(
                places.len() == 1
                    && places[0].starts_with(&format!("{}:", registry.display()))
                    && places[0].contains(&line),
                "{} ({config_type}) is named outside its file and its registry line: {places:#?}",
                kind.name
            );
        }
        // And every file of `notify/` that implements a sink is registered.
        for (path, text) in &files {
            if code_lines(text).any(|(_, l)| l.starts_with("impl Sink for")) {
                let notify = src.join("notify");
                let kind = path
                    .strip_prefix(&notify)
                    .ok()
                    .and_then(|p| p.iter().next());
                let kind = kind.map(|k| k.to_string_lossy().trim_end_matches(".rs").to_owned());
                assert!(
                    kinds.iter().any(|k| Some(k.name) == kind.as_deref()),
                    "{} implements a sink that is not in sink_kinds!",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn the_count_sees_every_way_code_names_a_kind() {
        for line in [
            "use super::slack::Slack;",
            "config.slack.iter()",
            "let s: SlackConfig = x;",
            "    slack: Vec<slack::SlackConfig>,",
        ] {
            assert!(names_kind(line, "slack", "SlackConfig"), "{line}");
        }
        for line in [
            "exporter.register_sink(\"slack\");",
            "let slacker = 1;",
            "a.slackness",
            "MySlackConfigs",
        ] {
            assert!(!names_kind(line, "slack", "SlackConfig"), "{line}");
        }
    }
}
