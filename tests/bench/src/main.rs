//! The benchmark harness: `cargo run --release -p bench -- <scenario> [--quick]`.
//!
//! Runs the release runner binary as a child process on a fresh data dir (its embedded
//! default), with the load generator and a local receiver answering 204 in this process,
//! and prints a Markdown table; `--write` appends it to BENCHMARKS.md with the command, the
//! machine and the date. Scenarios: throughput, latency, isolation, memory, coldstart,
//! stats-under-load, fairness, cost (the AWS backend against moto: calls and dollars per
//! delivered webhook), lambda-sizing (the function binaries at each Lambda memory size's
//! CPU share), all.
//! `--quick` runs a tiny version of each, to keep the harness working in CI.

mod aws_proxy;
mod cost;
mod receiver;
mod report;
mod runner;
mod scenarios;
mod sizing;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let write = args.iter().any(|a| a == "--write");
    let scenario = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "all".into());
    let names: Vec<&str> = match scenario.as_str() {
        "all" => vec![
            "throughput",
            "latency",
            "isolation",
            "memory",
            "coldstart",
            "stats-under-load",
            "stats-30d",
            // Not in `all`: `lambda-sizing` (it needs root, to cap each function's CPU in a
            // cgroup) and `fairness`: with A's backlog churning through the one deliveries queue,
            // B's deliveries still starve (BENCHMARKS.md); run it by name.
            "cost",
        ],
        one => vec![one],
    };
    let mut sections = Vec::new();
    for name in names {
        eprintln!("== {name}{}", if quick { " (quick)" } else { "" });
        let section = match name {
            "throughput" => scenarios::throughput(quick).await,
            "latency" => scenarios::latency(quick).await,
            "isolation" => scenarios::isolation(quick).await,
            "memory" => scenarios::memory(quick).await,
            "coldstart" => scenarios::coldstart(quick).await,
            "stats-under-load" => scenarios::stats_under_load(quick).await,
            "stats-30d" => scenarios::stats_30d(quick).await,
            "fairness" => scenarios::fairness(quick).await,
            "cost" => cost::cost(quick).await,
            "lambda-sizing" => sizing::lambda_sizing(quick).await,
            other => {
                eprintln!("unknown scenario {other}: throughput, latency, isolation, memory, coldstart, stats-under-load, stats-30d, fairness, cost, lambda-sizing, all");
                return ExitCode::FAILURE;
            }
        };
        match section {
            Ok(text) => {
                println!("{text}");
                sections.push(text);
            }
            Err(e) => {
                eprintln!("{name} failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if write {
        let command = format!("cargo run --release -p bench -- {}", args.join(" "));
        if let Err(e) = report::append(&command, &sections) {
            eprintln!("could not write BENCHMARKS.md: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
