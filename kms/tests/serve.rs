//! The `kms serve` process itself, attacked and used over real sockets:
//! what it configures is what it serves, and what one client can make it
//! hold is bounded.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A `kms serve` child process, killed on drop.
struct Serve {
    child: Child,
    /// The address it printed.
    addr: SocketAddr,
    /// `http` or `https`.
    scheme: String,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts `kms serve` on 127.0.0.1:0 with `extra` appended to a
    /// configuration whose data directory is a fresh temporary one.
    fn start(extra: &str) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{extra}",
            dir.path().join("data").display()
        );
        let path = dir.path().join("kms.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kms"))
            .args(["serve", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run kms serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(30);
        let line = loop {
            let l = lines
                .next()
                .expect("kms serve exited before listening")
                .unwrap();
            if l.starts_with("kms listening on ") {
                break l;
            }
            assert!(Instant::now() < deadline, "kms serve did not start");
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = line.trim_start_matches("kms listening on ");
        let (scheme, addr) = url.split_once("://").unwrap();
        Serve {
            child,
            addr: addr.parse().unwrap(),
            scheme: scheme.to_owned(),
            dir,
        }
    }

    fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// The process's resident memory, bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }
}

/// `[tls] enabled = true` was accepted and ignored by the first release:
/// the listener spoke plaintext. It is served now, with a certificate
/// issued by the root CA for `server_names`.
#[tokio::test]
async fn configured_tls_is_served() {
    let s = Serve::start("[tls]\nenabled = true\nserver_names = [\"127.0.0.1\"]\n");
    assert_eq!(s.scheme, "https");
    let ca = std::fs::read_to_string(s.dir.path().join("data/root-ca.crt")).unwrap();
    let mut c = kms_client::KmsClient::connect_with_ca(&s.url(), Some(&ca))
        .await
        .unwrap();
    let meta = c.meta().await.unwrap();
    assert!(meta.ca_cert.starts_with("-----BEGIN CERTIFICATE-----"));
    // A plaintext client gets nothing.
    let plain = format!("http://{}", s.addr);
    let r = match kms_client::KmsClient::connect(&plain).await {
        Ok(mut c) => c.meta().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert!(r.is_err(), "plaintext to a TLS listener must fail");
    // And a CA with an http:// URL is refused by the client, not downgraded.
    let err = match kms_client::KmsClient::connect_with_ca(&plain, Some(&ca)).await {
        Ok(_) => panic!("connected in plaintext although a CA was given"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not an https:// URL"), "{err}");
}

/// The first review: 400 streams on one connection, each sending most of a
/// 256 KiB body and then stalling, held about 100 MiB for ever. Now the
/// server grows by at most 32 MiB, serves other clients meanwhile, and
/// answers the stalled streams when their receive deadline passes.
#[tokio::test]
async fn stalled_streams_are_bounded_in_memory_and_time() {
    let s = Serve::start("[limits]\nrequest_timeout_secs = 3\nhandler_timeout_secs = 5\n");
    // Warm up: one ordinary call.
    let mut other = kms_client::KmsClient::connect(&s.url()).await.unwrap();
    other.meta().await.unwrap();
    let before = s.rss();

    let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut stalled = Vec::new();
    let mut sender = client;
    for _ in 0..400 {
        sender =
            match tokio::time::timeout(Duration::from_millis(300), sender.clone().ready()).await {
                Ok(Ok(s)) => s,
                _ => break,
            };
        let req = http::Request::post(format!("http://{}/kms.v1.Kms/GetAppKey", s.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let Ok((resp, mut body)) = sender.send_request(req, false) else {
            break;
        };
        // A gRPC frame announcing 256000 bytes, of which 250000 arrive.
        let mut data = vec![0u8; 5 + 250_000];
        data[1..5].copy_from_slice(&256_000u32.to_be_bytes());
        body.reserve_capacity(data.len());
        if body.send_data(Bytes::from(data), false).is_err() {
            break;
        }
        stalled.push((resp, body));
    }
    // The client may open all 400 before it learns the server's limit;
    // the server refuses every stream past its 64th.
    let opened = stalled.len();
    assert!(opened >= 64, "the attack opened {opened} streams");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let grown = s.rss().saturating_sub(before);
    eprintln!(
        "{opened} stalled streams: server grew by {:.1} MiB",
        grown as f64 / (1024.0 * 1024.0)
    );
    assert!(
        grown <= 32 * 1024 * 1024,
        "{opened} stalled streams grew the server by {} MiB",
        grown / (1024 * 1024)
    );

    // Another client is served meanwhile.
    let mut fresh = kms_client::KmsClient::connect(&s.url()).await.unwrap();
    let t = Instant::now();
    fresh.meta().await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));

    // The stalled streams are answered once their receive deadline passes.
    let (resp, _body) = stalled.swap_remove(0);
    let resp = tokio::time::timeout(Duration::from_secs(8), resp)
        .await
        .expect("a stalled stream is answered after its deadline");
    if let Ok(r) = resp {
        let status = r
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Trailers-only answer: DEADLINE_EXCEEDED (4) or CANCELLED (1).
        if let Some(st) = status {
            assert!(st == "4" || st == "1", "grpc-status {st}");
        }
    }
}

/// The metrics listener has limits too: a client that opens a connection
/// and sends nothing is cut off.
#[tokio::test]
async fn metrics_listener_cuts_off_silent_clients() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Serve::start(&format!(
        "metrics_listen = \"127.0.0.1:{port}\"\n[limits]\nrequest_timeout_secs = 1\nhandler_timeout_secs = 2\n"
    ));
    // The endpoint works.
    let mut ok = None;
    for _ in 0..50 {
        if let Ok(mut c) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut body = String::new();
            c.read_to_string(&mut body).await.unwrap();
            ok = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = ok.expect("metrics listener up");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("kms_get_app_key_requests_total"));
    // The key attestation results are signed with, as a JWK set: the one
    // GetMeta publishes.
    let jwks = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        c.write_all(b"GET /.well-known/jwks.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        c.read_to_string(&mut text).await.unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{text}"
        );
        let body = text.split("\r\n\r\n").nth(1).unwrap().to_owned();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let meta = kms_client::KmsClient::connect(&s.url())
        .await
        .unwrap()
        .meta()
        .await
        .unwrap();
    let published: serde_json::Value = serde_json::from_str(&meta.ear_jwk).unwrap();
    assert_eq!(jwks["keys"][0], published);
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    // A silent client is closed after the header deadline.
    use tokio::io::AsyncReadExt;
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut b = [0u8; 64];
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut b))
        .await
        .expect("the silent connection is closed")
        .unwrap_or(0);
    let _ = n;
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(s);
}

/// A gRPC client connecting from `local` (another loopback address stands
/// for another host).
async fn client_from(
    s: &Serve,
    local: &str,
) -> kms_client::proto::kms_client::KmsClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(s.url())
        .unwrap()
        .local_address(Some(local.parse().unwrap()))
        .connect()
        .await
        .unwrap();
    kms_client::proto::kms_client::KmsClient::new(channel)
}

/// Opens `n` HTTP/2 connections that never send a request; their
/// connection tasks answer the server's PINGs. Returns how many the server
/// kept past the handshake.
async fn requestless_connections(s: &Serve, n: usize) -> Vec<h2::client::SendRequest<Bytes>> {
    let mut held = Vec::new();
    for _ in 0..n {
        let tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let Ok(Ok((client, conn))) =
            tokio::time::timeout(Duration::from_secs(2), h2::client::handshake(tcp)).await
        else {
            continue;
        };
        tokio::spawn(async move {
            let _ = conn.await;
        });
        held.push(client);
    }
    held
}

/// One host opening connections that send no request (answering the
/// server's keep-alive PINGs, which used to count as activity) holds at
/// most its share of the slots, and only until the idle timeout: another
/// host is served at once, and the same host again after the timeout.
#[tokio::test]
async fn one_host_cannot_hold_every_connection_slot() {
    let s = Serve::start(
        "[limits]\nmax_connections = 32\nmax_connections_per_ip = 8\nidle_timeout_secs = 2\nkeepalive_interval_secs = 1\nkeepalive_timeout_secs = 1\n",
    );
    let held = requestless_connections(&s, 32).await;
    // Another host, while the first holds all it may.
    let mut other = client_from(&s, "127.0.0.2").await;
    other
        .get_meta(kms_client::proto::GetMetaRequest {})
        .await
        .unwrap();
    // The first host's connections past its share were closed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = held
        .iter()
        .filter(|c| {
            let mut c = (*c).clone();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            !matches!(c.poll_ready(&mut cx), std::task::Poll::Ready(Err(_)))
        })
        .count();
    assert!(open <= 8, "{open} connections of one host are open");
    // Well past the idle timeout and several keep-alive rounds: the
    // request-less connections are gone, and the host is served again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut again = client_from(&s, "127.0.0.1").await;
    again
        .get_meta(kms_client::proto::GetMetaRequest {})
        .await
        .unwrap();
    drop(held);
}

/// The stalled-stream attack spread over many connections from one host
/// fills that host's share of the request-byte budget, not the service's:
/// another host's ordinary request is still taken.
#[tokio::test]
async fn stalled_streams_from_one_host_cannot_starve_another() {
    let s = Serve::start(
        "[limits]\nmax_buffered_request_bytes = 8388608\nmax_buffered_request_bytes_per_ip = 2097152\n",
    );
    let mut stalled = Vec::new();
    for sender in requestless_connections(&s, 16).await {
        let mut sender = sender;
        for _ in 0..64 {
            sender = match tokio::time::timeout(Duration::from_millis(500), sender.clone().ready())
                .await
            {
                Ok(Ok(s)) => s,
                _ => break,
            };
            let req = http::Request::post(format!("http://{}/kms.v1.Kms/GetAppKey", s.addr))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let Ok((resp, mut body)) = sender.send_request(req, false) else {
                break;
            };
            // A gRPC frame announcing 256000 bytes, of which 15000 arrive.
            let mut data = vec![0u8; 15_000];
            data[1..5].copy_from_slice(&256_000u32.to_be_bytes());
            body.reserve_capacity(data.len());
            if body.send_data(Bytes::from(data), false).is_err() {
                break;
            }
            stalled.push((resp, body));
        }
    }
    assert!(
        stalled.len() * 15_000 > 8_388_608,
        "{} streams",
        stalled.len()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let request = || kms_client::proto::GetAppKeyRequest {
        evidence: Some(kms_client::proto::Evidence {
            platform: "tdx".into(),
            quote: vec![0; 5000],
            event_log: vec![b' '; 60_000],
            ..Default::default()
        }),
        client_public_key: vec![0; 32],
        challenge: vec![0; 57],
    };
    // The attacking host is over its share...
    let mut same = client_from(&s, "127.0.0.1").await;
    let err = same.get_app_key(request()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        err.message(),
        "this client holds too many request bytes; try again"
    );
    // ...another host is not: its request is read and judged (a bad challenge).
    let mut other = client_from(&s, "127.0.0.2").await;
    let err = other.get_app_key(request()).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    drop(stalled);
}

/// `[dstack_compat]` in `kms serve`: a second listener speaking dstack's
/// prpc over HTTPS, its certificate issued by the root CA for the
/// configured names; any HTTPS client gets dstack-shaped answers.
#[tokio::test]
async fn configured_dstack_listener_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[dstack_compat]\nlisten = \"127.0.0.1:0\"\nserver_names = [\"127.0.0.1\"]\n",
        dir.path().join("data").display()
    );
    let path = dir.path().join("kms.toml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kms serve");
    let mut s = Serve {
        child,
        addr: "127.0.0.1:1".parse().unwrap(),
        scheme: "http".into(),
        dir,
    };
    let stdout = s.child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let l = lines.next().expect("kms serve exited").unwrap();
        if let Some(rest) = l.strip_prefix("dstack-compatible prpc on https://") {
            break rest.trim_end_matches("/prpc").to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let root = std::fs::read_to_string(s.dir.path().join("data/root-ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            pem::parse(&root).unwrap().into_contents(),
        ))
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    tls.write_all(
        b"POST /prpc/GetTempCaCert?json HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnull",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body: serde_json::Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["ca_cert"], root);
    assert!(
        body["temp_ca_key"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    // The temp CA persists in the data directory.
    assert!(s.dir.path().join("data/dstack-tmp-ca.key").exists());
    let _ = s.addr;
    drop(s);
}
