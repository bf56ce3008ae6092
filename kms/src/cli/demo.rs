//! `kms demo`: one KMS, a TDX and an SNP CVM of one app through the one
//! GetAppKey path, and two refusals. Uses the testkit's FAKE vendor roots.

use std::process::ExitCode;

use attest_testkit::dstack::App;
use attest_testkit::snp::ReportFields;
use kms::demo::{OS_IMAGE, Pkis, Server};
use kms_client::{AppKeys, ClientError, KmsClient};

use super::error::CliError;

fn short(h: &str) -> String {
    if h.len() > 16 {
        format!("{}…{}", &h[..8], &h[h.len() - 8..])
    } else {
        h.to_owned()
    }
}

fn k256_public(keys: &AppKeys) -> String {
    match k256::SecretKey::from_slice(&keys.k256_key) {
        Ok(k) => hex::encode(
            k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&k.public_key(), true)
                .as_bytes(),
        ),
        Err(_) => "<invalid>".into(),
    }
}

fn env_public(keys: &AppKeys) -> String {
    <[u8; 32]>::try_from(&keys.env_crypt_key[..])
        .map(|k| hex::encode(kms::service::kdf::x25519_public(&k)))
        .unwrap_or_else(|_| "<invalid>".into())
}

/// `kms demo`.
pub fn demo() -> Result<ExitCode, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new(format!("runtime: {e}")))?;
    rt.block_on(run())
}

async fn run() -> Result<ExitCode, CliError> {
    println!("==================================================================");
    println!(" KMS DEMO -- TEST ROOTS ONLY");
    println!(" This demo trusts FAKE Intel and AMD roots made by attest-testkit.");
    println!(" Nothing it shows is secure; a production KMS never trusts them.");
    println!("==================================================================");
    let dir = std::env::temp_dir().join(format!(
        "kms-demo-{}-{}",
        std::process::id(),
        attest_core::UnixTime::now().as_secs()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| CliError::new(format!("{}: {e}", dir.display())))?;
    let result = scenario(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn scenario(dir: &std::path::Path) -> Result<ExitCode, CliError> {
    let pkis = Pkis::new();
    let app = App::example();
    let server = Server::start(dir, &pkis, &app)
        .await
        .map_err(CliError::new)?;
    println!(
        "KMS listening on {}  (key provider id {})",
        server.url,
        short(&server.key_provider_id)
    );
    println!(
        "Policy (TOML): platforms tdx + sev-snp; app {} with compose hash {}; OS image {}",
        short(&hex::encode(app.app_id)),
        short(&hex::encode(app.compose_hash)),
        short(OS_IMAGE)
    );
    println!();
    let mut ok = true;
    let mut client = KmsClient::connect(&server.url)
        .await
        .map_err(|e| CliError::new(e.to_string()))?;
    let kp = server.key_provider_id.clone();

    println!("[1] TDX CVM: DCAP quote + RTMR3 event log -> GetAppKey");
    let tdx = client
        .get_app_key(&kp, |rd| {
            let e = pkis.tdx_evidence(&app, rd, false);
            async move { Ok(e) }
        })
        .await;
    println!(
        "[2] SEV-SNP CVM of the same app: attestation report + app config (HOST_DATA) -> GetAppKey"
    );
    let snp = client
        .get_app_key(&kp, |rd| {
            let e = pkis.snp_evidence(&app, rd, ReportFields::default());
            async move { Ok(e) }
        })
        .await;
    match (&tdx, &snp) {
        (Ok(t), Ok(s)) => {
            println!("    TDX:     keys released, sealed to the CVM and signed by the pinned KMS");
            println!(
                "             k256 public key {}  env public key {}",
                short(&k256_public(t)),
                short(&env_public(t))
            );
            println!("    SEV-SNP: keys released");
            println!(
                "             k256 public key {}  env public key {}",
                short(&k256_public(s)),
                short(&env_public(s))
            );
            let same = *t.k256_key == *s.k256_key
                && *t.env_crypt_key == *s.env_crypt_key
                && *t.disk_crypt_key == *s.disk_crypt_key;
            println!(
                "    same app keys on both platforms: {}",
                if same { "yes" } else { "NO" }
            );
            ok &= same;
        }
        _ => {
            for (n, r) in [("TDX", &tdx), ("SEV-SNP", &snp)] {
                if let Err(e) = r {
                    println!("    {n}: unexpected refusal: {e}");
                }
            }
            ok = false;
        }
    }

    println!("[3] TDX CVM in debug mode -> GetAppKey");
    let debug = client
        .get_app_key(&kp, |rd| {
            let e = pkis.tdx_evidence(&app, rd, true);
            async move { Ok(e) }
        })
        .await;
    ok &= report_denial(debug);

    println!("[4] SEV-SNP CVM running an unapproved compose file -> GetAppKey");
    let mut rogue = app.clone();
    rogue.compose_hash[31] ^= 0xff;
    let denied = client
        .get_app_key(&kp, |rd| {
            let e = pkis.snp_evidence(&rogue, rd, ReportFields::default());
            async move { Ok(e) }
        })
        .await;
    ok &= report_denial(denied);

    server.stop().await;
    println!();
    if ok {
        println!(
            "Demo complete: one GetAppKey path, one policy, one key derivation for TDX and SEV-SNP."
        );
        println!("(TEST ROOTS ONLY.)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Demo FAILED: an outcome differed from the expected one.");
        Ok(ExitCode::FAILURE)
    }
}

fn report_denial(r: Result<AppKeys, ClientError>) -> bool {
    match r {
        Err(ClientError::Refused { code, message }) => {
            println!("    DENIED ({code:?}): {message}");
            true
        }
        Err(e) => {
            println!("    failed unexpectedly: {e}");
            false
        }
        Ok(_) => {
            println!("    keys released -- this should have been denied");
            false
        }
    }
}
