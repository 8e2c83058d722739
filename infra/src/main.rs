use clap::Parser;
use runner::{Config, Runner};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
