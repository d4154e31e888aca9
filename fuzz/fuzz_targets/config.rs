//! The config loader on arbitrary text: never panics, and every rejection names the file and
//! a line inside it (the operator must be able to find the problem).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mhrouter::config::{Config, ConfigError};

fuzz_target!(|text: &str| {
    match Config::parse(text, "fuzz.toml") {
        Ok(cfg) => assert!(!cfg.uplinks.is_empty()),
        Err(ConfigError::Invalid { origin, line, .. }) => {
            assert_eq!(origin, "fuzz.toml");
            assert!(line >= 1 && line <= text.lines().count().max(1) + 1, "line {line}");
        }
        Err(e) => panic!("parsing text gave a non-positional error: {e}"),
    }
});
