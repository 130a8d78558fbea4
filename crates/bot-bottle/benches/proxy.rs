//! Egress proxy throughput and added latency, with two baselines measured in
//! the same run: direct to the upstream, and mitmproxy's `mitmdump` as a
//! plain intercepting proxy. Not a test: it prints.
//!
//!     bench/proxy.sh     (installs Debian's mitmproxy if missing, then runs this)
//!
//! An in-process HTTPS upstream (test CA, `localhost`) serves 1 KB and 1 MB
//! bodies; for each of direct / bot-bottle egress (TLS-intercepted, DLP on) /
//! mitmdump, and 1, 10, 100 keep-alive connections, clients send GETs for a
//! fixed time. Prints requests/s, p50/p99 latency and the proxy's added
//! latency, then each proxy's peak RSS.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECONDS: u64 = 3;

struct Upstream {
    port: u16,
    ca_pem: String,
}

fn upstream(rt: &tokio::runtime::Runtime) -> Upstream {
    let ca = test_support::TestCa::new("bench upstream CA");
    let acceptor = ca.acceptor(&["localhost"]);
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let small = Bytes::from(vec![b'a'; 1024]);
    let large = Bytes::from(vec![b'b'; 1024 * 1024]);
    let _in_runtime = rt.enter();
    test_support::accept_each(listener, move |tcp| {
        // As production servers do: no Nagle delay on small trailing segments.
        let _ = tcp.set_nodelay(true);
        let (acceptor, small, large) = (acceptor.clone(), small.clone(), large.clone());
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else { return };
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let body = if req.uri().path() == "/1m" { large.clone() } else { small.clone() };
                async move {
                    let mut r = Response::new(Full::new(body));
                    r.headers_mut().insert("content-type", "application/octet-stream".parse().unwrap());
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        }
    });
    Upstream { port, ca_pem: ca.cert_pem }
}

/// One client connection: optional CONNECT through `proxy`, TLS trusting
/// `ca_pem`, then keep-alive GETs of `path` until `deadline`.
async fn client(
    proxy: Option<String>,
    port: u16,
    ca_pem: Arc<Vec<u8>>,
    path: &'static str,
    deadline: Instant,
) -> Vec<Duration> {
    let target = format!("127.0.0.1:{port}");
    let mut tcp = tokio::net::TcpStream::connect(proxy.as_deref().unwrap_or(&target)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    if proxy.is_some() {
        tcp.write_all(format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"),
            "{}",
            String::from_utf8_lossy(&head)
        );
    }
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(rustls::pki_types::ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut latencies = Vec::new();
    while Instant::now() < deadline {
        let req = Request::get(path).header("host", format!("localhost:{port}")).body(Empty::<Bytes>::new()).unwrap();
        let start = Instant::now();
        let Ok(res) = sender.send_request(req).await else { break };
        let ok = res.status().is_success();
        let _ = res.into_body().collect().await;
        if ok {
            latencies.push(start.elapsed());
        }
    }
    latencies
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

fn run(
    rt: &tokio::runtime::Runtime,
    proxy: Option<&str>,
    up: &Upstream,
    ca_pem: &[u8],
    path: &'static str,
    conns: usize,
) -> Run {
    let ca = Arc::new(ca_pem.to_vec());
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let start = Instant::now();
    let mut all: Vec<Duration> = rt.block_on(async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::spawn(client(proxy.map(str::to_string), up.port, ca.clone(), path, deadline)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = start.elapsed();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    Run { rps: all.len() as f64 / elapsed.as_secs_f64(), p50: pct(0.5), p99: pct(0.99) }
}

fn wait_listening(child: &mut Child, marker: &str) -> String {
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        let line = lines.next().expect("the proxy exited").unwrap();
        if let Some(rest) = line.split(marker).nth(1) {
            std::thread::spawn(move || for _ in lines {});
            return rest.trim().to_string();
        }
    }
}

fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let up = upstream(&rt);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upstream-ca.pem"), &up.ca_pem).unwrap();

    // bot-bottle egress, as a user runs it.
    let bottle = dir.path().join("bench.md");
    std::fs::write(
        &bottle,
        "---\negress:\n  routes:\n    - host: localhost\n      ports: [1024-65535]\n      dlp: {outbound_on_match: block}\n---\n",
    )
    .unwrap();
    let mut ours = Command::new(env!("CARGO_BIN_EXE_bot-bottle"))
        .args(["egress", "--bottle"])
        .arg(&bottle)
        .arg("--ca-dir")
        .arg(dir.path().join("ca"))
        .args(["--listen", "127.0.0.1:0", "--upstream-ca"])
        .arg(dir.path().join("upstream-ca.pem"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ours_addr = wait_listening(&mut ours, "egress listening on ");
    let ours_ca = std::fs::read(dir.path().join("ca/ca.pem")).unwrap();

    // mitmdump, when installed.
    let mitm_port = free_port();
    let confdir = dir.path().join("mitm");
    let mitm = Command::new("mitmdump")
        .args(["--listen-host", "127.0.0.1", "--listen-port", &mitm_port.to_string(), "-q"])
        .args(["--set", &format!("confdir={}", confdir.display())])
        // Upstream verification off: the baseline gets the cheaper path.
        .arg("--ssl-insecure")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    let mitm_ca = mitm.as_ref().and_then(|_| {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", mitm_port)).is_ok() {
                return std::fs::read(confdir.join("mitmproxy-ca-cert.pem")).ok();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    });

    println!("egress proxy benchmark: {SECONDS} s per cell, keep-alive, TLS to the upstream and (proxied) intercepted");
    println!(
        "{:<12} {:>5} {:>6} {:>11} {:>10} {:>10} {:>12}",
        "proxy", "size", "conns", "req/s", "p50", "p99", "added p50"
    );
    for (path, size) in [("/1k", "1KB"), ("/1m", "1MB")] {
        if path == "/1m" {
            println!("peak RSS after the 1 KB runs: bot-bottle egress {} KB", peak_rss_kb(ours.id()));
        }
        for conns in [1, 10, 100] {
            let direct = run(&rt, None, &up, up.ca_pem.as_bytes(), path, conns);
            let mut rows = vec![("direct", Some(direct.rps), direct.p50, direct.p99)];
            let r = run(&rt, Some(&ours_addr), &up, &ours_ca, path, conns);
            rows.push(("bot-bottle", Some(r.rps), r.p50, r.p99));
            if let Some(ca) = &mitm_ca {
                let r = run(&rt, Some(&format!("127.0.0.1:{mitm_port}")), &up, ca, path, conns);
                rows.push(("mitmdump", Some(r.rps), r.p50, r.p99));
            }
            for (name, rps, p50, p99) in rows {
                let added = p50.saturating_sub(direct.p50);
                println!(
                    "{name:<12} {size:>5} {conns:>6} {:>11.0} {:>10.2?} {:>10.2?} {:>12.2?}",
                    rps.unwrap_or(0.0),
                    p50,
                    p99,
                    added
                );
            }
        }
    }
    println!("peak RSS bot-bottle egress: {} KB", peak_rss_kb(ours.id()));
    match &mitm {
        Some(m) if mitm_ca.is_some() => println!("peak RSS mitmdump: {} KB", peak_rss_kb(m.id())),
        _ => println!("mitmdump: not installed (apt-get install mitmproxy), no baseline"),
    }
    let _ = ours.kill();
    if let Some(mut m) = mitm {
        let _ = m.kill();
    }
}
