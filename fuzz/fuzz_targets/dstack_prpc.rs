//! dstack's prpc requests through the whole HTTP handler (route, encoding,
//! JSON / protobuf / query decoding, RA-TLS client certificate, binding,
//! release with stub plug-ins). Input: one flags byte (method, route,
//! content type), then `u32le(len) ‖ query ‖ u32le(len) ‖ body ‖ client
//! certificate DER`.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kms::service::dstack::{Conn, DstackFront, prpc};
use libfuzzer_sys::fuzz_target;

const ROUTES: [&str; 8] = [
    "/prpc/GetAppKey",
    "/prpc/KMS.SignCert",
    "/prpc/GetTempCaCert",
    "/prpc/GetAppEnvEncryptPubKey",
    "/prpc/KMS.GetMeta",
    "/prpc/GetKmsKey",
    "/health",
    "/prpc/Nope",
];

fn front() -> &'static Arc<DstackFront> {
    static F: OnceLock<Arc<DstackFront>> = OnceLock::new();
    F.get_or_init(|| {
        let (state, dir) = kms_fuzz::stub_state();
        let config = kms::config::DstackCompatConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            server_names: vec!["kms.test".into()],
            gateway_app_id: "any".into(),
        };
        Arc::new(
            DstackFront::new(
                state.clone(),
                &config,
                dir,
                vec!["kms.test".into()],
                Default::default(),
                64 * 1024,
            )
            .expect("front"),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (query, rest) = kms_fuzz::split(rest);
    let (body, cert) = kms_fuzz::split(rest);
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let path = ROUTES[usize::from(flags >> 1) % ROUTES.len()];
    let uri = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let mut b = http::Request::builder()
        .method(if flags & 1 == 0 { "POST" } else { "GET" })
        .uri(uri);
    if flags & 0x10 != 0 {
        b = b.header("content-type", "application/json");
    }
    let Ok(req) = b.body(Full::new(Bytes::copy_from_slice(body))) else {
        return;
    };
    let conn = Conn {
        client_cert: (!cert.is_empty()).then(|| Arc::new(cert.to_vec())),
    };
    kms_fuzz::runtime().block_on(async {
        let resp = prpc::handle(front().clone(), conn, None, req).await;
        let _ = resp.into_body().collect().await;
    });
});
