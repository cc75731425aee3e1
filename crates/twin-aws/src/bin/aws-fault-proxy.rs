//! A counting (and, for tests, fault-injecting) proxy in front of an AWS emulator, for the
//! benchmark script: `aws-fault-proxy --upstream 127.0.0.1:5000 --port 5001`; then
//! `GET /__proxy/stats` answers the call counters as JSON and `POST /__proxy/reset` clears them.

use std::net::SocketAddr;
use twin_aws::fault_proxy::FaultProxy;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let upstream: Option<SocketAddr> = arg(&args, "--upstream").and_then(|u| u.parse().ok());
    let port: u16 = arg(&args, "--port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let Some(upstream) = upstream else {
        eprintln!("usage: aws-fault-proxy --upstream HOST:PORT [--port PORT]");
        std::process::exit(2);
    };
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    match FaultProxy::serve(listener, upstream) {
        Ok(p) => println!("{}", p.endpoint),
        Err(e) => {
            eprintln!("cannot start: {e}");
            std::process::exit(1);
        }
    }
    // Serve until killed.
    std::future::pending::<()>().await;
}
