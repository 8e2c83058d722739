use clap::Parser;
use runner::{Config, Runner};

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    limit_malloc_arenas();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// glibc gives each thread that allocates under contention an arena of its own, up to
/// eight per core, and keeps what is freed in each. The runner's threads (the runtime's,
/// the SQLite writer's and readers') then hold several idle heaps: under load, about 3 MiB
/// of resident memory more than with two arenas (`BENCHMARKS.md`, memory). Set before any
/// thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    init_tracing();
    let config = Config::parse();
    let runner = match Runner::start(config.clone()).await {
        Ok(runner) => runner,
        // What stops a start (a data dir of a newer version, an unreadable key file) is
        // said in words, not as a debug dump of the error.
        Err(e) => {
            eprintln!("webhooks: cannot start: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(addr = %runner.addr, data_dir = %config.data_dir.display(), "webhooks runner started");
    if runner.platform_key_generated {
        println!(
            "Generated a platform key (kept in {}): {}",
            config.data_dir.join("platform-key").display(),
            runner.platform_key
        );
    }
    println!("Listening on http://{}", runner.addr);
    println!(
        "Console: http://{}/console/ (sign in with the platform key or an account key)",
        runner.addr
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    runner.shutdown().await;
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if std::env::var("WEBHOOKS_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
