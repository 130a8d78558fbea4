//! `sidecar::run` as a bottle's sidecar process runs it, in-process: from
//! the files the host writes to serving on unix sockets, and stopping when
//! told, within its drain bound, even with a client that never finishes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sidecar::config::{EGRESS_SOCKET, EgressConfig, SUPERVISE_SOCKET, SidecarConfig, SidecarSecrets, SuperviseConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the host writes for a bottle with one route: the route file, the
/// bottle CA, the config (the secrets are handed over as a value).
fn bottle(dir: &Path) -> (SidecarConfig, SidecarSecrets) {
    let text = "---\negress:\n  routes:\n    - host: api.example.com\n---\n";
    let file = manifest::parse_bottle_text("test", &dir.join("test.md"), text).unwrap();
    let specs: Vec<routes::RouteSpec> = file.routes.iter().map(routes::RouteSpec::from_manifest).collect();
    let rendered = routes::render(&specs, 1);
    let routes = dir.join("routes.json");
    std::fs::write(&routes, &rendered.text).unwrap();
    let ca = egress::ca::BottleCa::mint("test").unwrap();
    let ca_dir = dir.join("egress");
    std::fs::create_dir_all(&ca_dir).unwrap();
    std::fs::write(ca_dir.join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(ca_dir.join("ca.key"), ca.key_pem.expose()).unwrap();
    let config = SidecarConfig {
        identity: "test-bottle".into(),
        run_dir: dir.join("run"),
        egress: EgressConfig { routes, ca_dir },
        git_gate: None,
        supervise: SuperviseConfig {
            store: dir.join("supervise/proposals.db"),
            tool_timeout_secs: 60,
            allowed_hosts: Vec::new(),
        },
        secrets: dir.join("secrets.json"),
    };
    let secrets =
        SidecarSecrets { tokens: BTreeMap::new(), known: BTreeMap::new(), canary: Some("canary-Zq81xLm2Pw7".into()) };
    (config, secrets)
}

async fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(10), "{} never appeared", path.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn serves_its_sockets_and_stops_within_the_drain_bound() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("supervise")).unwrap();
    let (config, secrets) = bottle(dir.path());
    let run_dir = config.run_dir.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = tokio::spawn(sidecar::run(config, secrets, "true", async move {
        let _ = stopped.await;
    }));
    let egress_socket = run_dir.join(EGRESS_SOCKET);
    wait_for(&egress_socket).await;
    wait_for(&run_dir.join(SUPERVISE_SOCKET)).await;

    // The proxy answers on its socket: a host with no route is refused.
    let mut conn = tokio::net::UnixStream::connect(&egress_socket).await.unwrap();
    conn.write_all(b"GET http://elsewhere.example.net/ HTTP/1.1\r\nHost: elsewhere.example.net\r\n\r\n").await.unwrap();
    let mut head = vec![0u8; 512];
    let n = conn.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");

    // A client that opened a tunnel and never finishes does not hold the
    // stop beyond the drain bound.
    let mut idle = tokio::net::UnixStream::connect(&egress_socket).await.unwrap();
    idle.write_all(b"CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n").await.unwrap();
    let mut answer = vec![0u8; 256];
    let n = idle.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));

    let t0 = Instant::now();
    stop.send(()).unwrap();
    let ended = tokio::time::timeout(sidecar::listen::DRAIN + Duration::from_secs(5), sidecar).await;
    let result = ended.expect("the sidecar did not stop within its drain bound").unwrap();
    assert!(result.is_ok(), "{result:?}");
    assert!(t0.elapsed() <= sidecar::listen::DRAIN + Duration::from_secs(2), "stopping took {:?}", t0.elapsed());
    assert!(!egress_socket.exists(), "the socket is removed when the sidecar stops");
}

#[tokio::test]
async fn a_route_file_it_cannot_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, secrets) = bottle(dir.path());
    config.egress.routes = dir.path().join("missing-routes.json");
    let err = sidecar::run(config, secrets, "true", std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("missing-routes.json"), "{err}");
}
