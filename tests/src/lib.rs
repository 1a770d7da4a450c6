//! # e2e: the real binaries, end to end
//!
//! Library code shared by the end-to-end tests (`tests/tests/*.rs`) and the
//! one-command demo (`src/bin/demo.rs`, run by `deploy/demo.sh`): a real
//! SQLite state database, real agent processes, the real `emitter` and
//! `watchdog` binaries, and the external tools (Prometheus, Alertmanager).

pub mod agent_cli;
pub mod agent_cli_capture;
pub mod agent_cli_demo;
pub mod agent_cli_lab;
pub mod agent_cli_procfs;
pub mod agents;
pub mod am_cluster;
pub mod bins;
pub mod browser;
pub mod contract;
pub mod ext;
pub mod fake_model;
pub mod fake_model_http;
pub mod fake_model_openai;
pub mod field;
pub mod harness;
pub mod lab;
pub mod net;
pub mod orchestrator;
pub mod procs;
pub mod stack;
pub mod statedb;
pub mod systemd_ns;
pub mod tools;
