//! Any bytes as what an agent sends the egress proxy: hyper's request-head
//! parsing, CONNECT handling and the decision pipeline must answer or close,
//! never panic or hang. The proxy routes only `localhost` (nothing listens
//! on the ports inputs name, so forwarding fails fast on loopback).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use egress::ca::{BottleCa, LeafIssuer};
use egress::decision::Tokens;
use egress::proxy::Proxy;
use egress::{RouteSpec, load, render};
use libfuzzer_sys::fuzz_target;
use manifest::{Dlp, GitPolicy, OnMatch, Route};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn setup() -> &'static (tokio::runtime::Runtime, Arc<Proxy>) {
    static SETUP: OnceLock<(tokio::runtime::Runtime, Arc<Proxy>)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let route = Route { host: "localhost".into(), auth: None, matches: vec![], dlp: Dlp::default(), git: GitPolicy::default(), ports: vec![], allow_private: false };
        let spec = RouteSpec { route, auth: None, on_match: OnMatch::Block, provider: false };
        let file = load(&render(&[spec], 0).text).unwrap();
        let ca = BottleCa::mint("fuzz").unwrap();
        let issuer = LeafIssuer::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
        let proxy = rt.block_on(async { Proxy::new(file, Tokens::default(), dlp::KnownSecrets::new(), issuer, None).unwrap() });
        (rt, Arc::new(proxy))
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, proxy) = setup();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let task = tokio::spawn(proxy.clone().serve(server));
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut out)).await;
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    });
});
