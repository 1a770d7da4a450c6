//! Arbitrary text as the watchdog's TOML config file.
//!
//! `Config::load` must never panic: a bad file is a `ConfigError` naming
//! the key and the file. A config that loads prints (`--print-config`) to
//! TOML that loads again to the same effective config, and the printed
//! form is a fixed point.
//!
//! Inputs naming a `token_file` are skipped: loading reads that file, and
//! the fuzzer would otherwise read whatever paths it invents (`/dev/zero`).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use watchdog::config::{Config, Overrides};

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    })
}

fn load(text: &str, name: &str) -> Result<Config, watchdog::config::ConfigError> {
    let path = scratch().join(name);
    std::fs::write(&path, text).expect("write the config");
    Config::load(&Overrides {
        config: Some(path),
        ..Overrides::default()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("token_file") {
        return;
    }
    let Ok(config) = load(text, "in.toml") else {
        return;
    };
    let printed = config.to_toml();
    let again = load(&printed, "printed.toml")
        .unwrap_or_else(|e| panic!("--print-config output does not load: {e}\n{printed}"));
    let reprinted = again.to_toml();
    assert_eq!(printed, reprinted, "--print-config is not a fixed point");
});
