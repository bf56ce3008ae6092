//! Where endorsement key certificates come from.
//!
//! - [`certs_from_evidence`]: the certificate table the guest got with its
//!   extended report (configfs-tsm `auxblob`), or a PEM/DER VCEK. Only the
//!   VCEK/VLEK is taken from it; ARK and ASK are always the pinned ones.
//! - [`OfflineVceks`]: a directory of DER files.
//! - [`KdsClient`]: AMD KDS, with a persistent cache that never fetches the
//!   same VCEK twice and backs off when KDS answers 429. A report names its
//!   own CHIP_ID and TCB, unsigned until its VCEK is known, so fetches for
//!   chips never seen are budgeted per minute (a flood of forged reports
//!   exhausts the budget, never KDS's rate limit, and chips already cached
//!   keep verifying), "not found" answers are remembered, and the per-name
//!   locks live only while a fetch is in flight.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use attest_core::fetch::{FetchBudget, NegativeCache, SingleFlight};
use attest_core::{AttestError, CollateralMissing, Malformed, Unavailable};

use crate::report::Signer;
use crate::{Product, Roots};

/// Largest certificate accepted.
pub const MAX_CERT: usize = 16 * 1024;

/// What identifies the endorsement key a report needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VekRequest {
    /// The product, when the report names it (v3+).
    pub product: Option<Product>,
    /// VCEK or VLEK.
    pub signer: Signer,
    /// CHIP_ID.
    pub chip_id: [u8; 64],
    /// REPORTED_TCB, raw.
    pub reported_tcb: [u8; 8],
}

impl VekRequest {
    /// The hwID KDS expects: the whole CHIP_ID, or its first 8 bytes on Turin.
    pub fn hwid(&self, product: Product) -> &[u8] {
        match product {
            Product::Turin => &self.chip_id[..8],
            _ => &self.chip_id,
        }
    }

    /// Products to try: the named one, else the v2-era ones.
    pub fn candidates(&self) -> Vec<Product> {
        match self.product {
            Some(p) => vec![p],
            None => vec![Product::Milan, Product::Genoa],
        }
    }

    /// `{product}-{hwid}-{tcb}.der`, the file name in offline directories and the KDS cache.
    pub fn file_name(&self, product: Product) -> String {
        format!(
            "{}-{}-{}.der",
            product.kds_name(),
            hex::encode(self.hwid(product)),
            hex::encode(self.reported_tcb)
        )
    }
}

/// A source of endorsement key certificates (DER).
#[async_trait]
pub trait VcekSource: Send + Sync {
    /// The certificate for `req`.
    async fn fetch(&self, req: &VekRequest) -> Result<Vec<u8>, AttestError>;
}

/// GUIDs of the GHCB certificate table entries (GHCB spec 56421).
pub mod table_guid {
    use crate::guid::guid;
    /// The ARK.
    pub const ARK: [u8; 16] = guid("c0b406a4-a803-4952-9743-3fb6014cd0ae");
    /// The ASK (or ASVK).
    pub const ASK: [u8; 16] = guid("4ab7b379-bbac-4fe4-a02f-05aef327c782");
    /// The VCEK.
    pub const VCEK: [u8; 16] = guid("63da758d-e664-4564-adc5-f4b93be8accd");
    /// The VLEK.
    pub const VLEK: [u8; 16] = guid("a8074bc2-a25a-483e-aae6-39c045a0b8a1");
    /// A CRL.
    pub const CRL: [u8; 16] = guid("92f81bc3-5811-4d3d-97ff-d19f88dc67ea");
}

/// The DER certificates of a PEM bundle, in order.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    pem_to_der(pem)
}

fn pem_to_der(pem_bytes: &[u8]) -> Vec<Vec<u8>> {
    pem::parse_many(pem_bytes)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.tag() == "CERTIFICATE")
        .map(|p| p.into_contents())
        .collect()
}

/// The VCEK/VLEK carried with the evidence: a GHCB certificate table
/// (`{GUID, u32 offset, u32 length}` entries ending with a zero GUID), a PEM
/// bundle (the VEK is the certificate whose CN names the signer), or one DER
/// certificate. `None` when the evidence carries none.
pub fn certs_from_evidence(bytes: &[u8], signer: Signer) -> Result<Option<Vec<u8>>, AttestError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let want_cn = match signer {
        Signer::Vcek => "SEV-VCEK",
        Signer::Vlek => "SEV-VLEK",
    };
    if bytes.starts_with(b"-----BEGIN") {
        for der in pem_to_der(bytes) {
            if let Ok(v) = crate::certs::Vek::parse(&der) {
                if v.common_name == want_cn {
                    return Ok(Some(der));
                }
            }
        }
        return Ok(None);
    }
    if bytes[0] == 0x30 {
        return Ok(Some(bytes.to_vec()));
    }
    let guid = match signer {
        Signer::Vcek => table_guid::VCEK,
        Signer::Vlek => table_guid::VLEK,
    };
    // `{GUID, u32 offset, u32 length}` entries, closed by an all-zero
    // GUID; offsets count from the start of the table.
    let mut r = attest_core::reader::Reader::new(bytes, "certificate table");
    for _ in 0..MAX_TABLE_ENTRIES {
        let g: [u8; 16] = r.take_array("entry GUID")?;
        let off = r.u32_le("entry offset")? as usize;
        let len = r.u32_le("entry length")? as usize;
        if g == [0u8; 16] {
            return Ok(None);
        }
        if g == guid {
            if len > MAX_CERT {
                return Err(Malformed::TooLarge {
                    what: "certificate table entry".into(),
                    size: len,
                    max: MAX_CERT,
                }
                .into());
            }
            let cert = off
                .checked_add(len)
                .and_then(|end| bytes.get(off..end))
                .ok_or_else(|| Malformed::BadValue {
                    what: "certificate table entry".into(),
                    expected: format!("a region inside the table's {} bytes", bytes.len()),
                    found: format!("offset {off}, length {len}"),
                })?;
            return Ok(Some(cert.to_vec()));
        }
    }
    Err(Malformed::TooMany {
        what: "certificate table".into(),
        items: "entries or more",
        count: MAX_TABLE_ENTRIES + 1,
        max: MAX_TABLE_ENTRIES,
    }
    .into())
}

/// Most entries a certificate table may have.
const MAX_TABLE_ENTRIES: usize = 64;

/// A directory of certificates named as [`VekRequest::file_name`] says.
pub struct OfflineVceks {
    dir: PathBuf,
}

impl OfflineVceks {
    /// A source reading `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        OfflineVceks { dir: dir.into() }
    }
}

fn read_cert(path: &std::path::Path) -> Result<Option<Vec<u8>>, AttestError> {
    match std::fs::read(path) {
        Ok(b) if b.len() <= MAX_CERT => Ok(Some(b)),
        Ok(b) => Err(Malformed::TooLarge {
            what: path.display().to_string(),
            size: b.len(),
            max: MAX_CERT,
        }
        .into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Unavailable::Local {
            detail: format!("{}: {e}", path.display()),
        }
        .into()),
    }
}

#[async_trait]
impl crate::crl::CrlSource for OfflineVceks {
    /// `{dir}/{Product}-{vcek|vlek}.crl`, as KDS serves it (DER).
    async fn fetch_crl(
        &self,
        product: Product,
        signer: Signer,
    ) -> Result<Option<Vec<u8>>, AttestError> {
        let path = self.dir.join(crate::crl::crl_name(product, signer));
        match std::fs::read(&path) {
            Ok(b) if b.len() <= crate::crl::MAX_CRL => Ok(Some(b)),
            Ok(b) => Err(Malformed::TooLarge {
                what: path.display().to_string(),
                size: b.len(),
                max: crate::crl::MAX_CRL,
            }
            .into()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Unavailable::Local {
                detail: format!("{}: {e}", path.display()),
            }
            .into()),
        }
    }

    fn is_network(&self) -> bool {
        false
    }
}

#[async_trait]
impl VcekSource for OfflineVceks {
    async fn fetch(&self, req: &VekRequest) -> Result<Vec<u8>, AttestError> {
        for p in req.candidates() {
            if let Some(c) = read_cert(&self.dir.join(req.file_name(p)))? {
                return Ok(c);
            }
        }
        Err(CollateralMissing::NotFound {
            detail: format!(
                "no endorsement key certificate for {} in {}",
                req.file_name(req.product.unwrap_or(Product::Milan)),
                self.dir.display()
            ),
        }
        .into())
    }
}

/// AMD's Key Distribution Service.
pub const AMD_KDS: &str = "https://kdsintf.amd.com";

/// The KDS client and its cache.
pub struct KdsClient {
    base: String,
    http: reqwest::Client,
    cache_dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Arc<Vec<u8>>>>,
    flights: SingleFlight<String>,
    budget: FetchBudget,
    not_found: NegativeCache<String>,
    backoff: Mutex<Option<(Instant, Duration)>>,
    fetches: std::sync::atomic::AtomicU64,
    roots: Arc<Roots>,
}

/// Most VCEKs held in memory (the disk cache keeps the rest).
const MAX_IN_MEMORY: usize = 16_384;
/// Most VCEKs written to the disk cache; past it, new ones stay in memory.
const MAX_ON_DISK: usize = 65_536;

impl KdsClient {
    /// Fetches per minute for chips never seen, by default (AMD KDS
    /// throttles at a few requests per second per client).
    pub const DEFAULT_FETCH_BUDGET: u32 = 30;
    /// How long a 404 from KDS is remembered.
    pub const NOT_FOUND_TTL: Duration = Duration::from_secs(600);

    /// A client for `base` (normally [`AMD_KDS`]), persisting to `cache_dir`.
    /// `base` must be https, or http to a loopback host.
    pub fn new(
        base: &str,
        cache_dir: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, AttestError> {
        Self::with_options(base, cache_dir, timeout, false)
    }

    /// [`KdsClient::new`], optionally allowing plain HTTP to any host.
    pub fn with_options(
        base: &str,
        cache_dir: Option<PathBuf>,
        timeout: Duration,
        insecure_http: bool,
    ) -> Result<Self, AttestError> {
        attest_core::fetch::check_service_url(base, insecure_http)?;
        // No redirects: the transport rule above is checked on this URL
        // only, and a redirect could lead anywhere (plain HTTP, an
        // internal address).
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("confidential-kms/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Unavailable::Local {
                detail: format!("http client: {e}"),
            })?;
        Ok(KdsClient {
            base: base.trim_end_matches('/').to_owned(),
            http,
            cache_dir,
            memory: Mutex::new(HashMap::new()),
            flights: SingleFlight::default(),
            budget: FetchBudget::per_minute(Self::DEFAULT_FETCH_BUDGET),
            not_found: NegativeCache::new(Self::NOT_FOUND_TTL, MAX_IN_MEMORY),
            backoff: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
            roots: Arc::new(Roots::amd()?),
        })
    }

    /// Checks fetched VCEKs against `roots` instead of AMD's (tests with a
    /// fake AMD PKI).
    pub fn with_roots(mut self, roots: Roots) -> Self {
        self.roots = Arc::new(roots);
        self
    }

    /// Sets how many fetches per minute may start for chips never seen.
    pub fn with_fetch_budget(mut self, per_minute: u32) -> Self {
        self.budget = FetchBudget::per_minute(per_minute);
        self
    }

    /// How many names have a fetch in flight (bounded by requests).
    pub fn fetches_in_flight(&self) -> usize {
        self.flights.len()
    }

    /// How many requests reached KDS (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The KDS URL of a VCEK.
    pub fn vcek_url(&self, req: &VekRequest, product: Product) -> String {
        let t = crate::report::Tcb::decode(product, &req.reported_tcb);
        let hwid = hex::encode(req.hwid(product));
        let spl = format!(
            "blSPL={:02}&teeSPL={:02}&snpSPL={:02}&ucodeSPL={:02}",
            t.bootloader, t.tee, t.snp, t.microcode
        );
        match product {
            Product::Turin => format!(
                "{}/vcek/v1/Turin/{hwid}?fmcSPL={:02}&{spl}",
                self.base,
                t.fmc.unwrap_or(0)
            ),
            p => format!("{}/vcek/v1/{}/{hwid}?{spl}", self.base, p.kds_name()),
        }
    }

    fn in_backoff(&self) -> Option<Duration> {
        let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        b.and_then(|(until, _)| until.checked_duration_since(Instant::now()))
    }

    fn note_throttled(&self, retry_after: Option<Duration>) {
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let next = retry_after.unwrap_or_else(|| {
            b.map(|(_, d)| (d * 2).min(Duration::from_secs(300)))
                .unwrap_or(Duration::from_secs(10))
        });
        *b = Some((Instant::now() + next, next));
    }

    /// The KDS URL of a product's CRL.
    pub fn crl_url(&self, product: Product, signer: Signer) -> String {
        let kind = match signer {
            Signer::Vcek => "vcek",
            Signer::Vlek => "vlek",
        };
        format!("{}/{kind}/v1/{}/crl", self.base, product.kds_name())
    }

    async fn get(&self, url: &str) -> Result<Option<Vec<u8>>, AttestError> {
        self.get_bounded(url, MAX_CERT).await
    }

    async fn get_bounded(&self, url: &str, max: usize) -> Result<Option<Vec<u8>>, AttestError> {
        if let Some(left) = self.in_backoff() {
            return Err(Unavailable::Throttled {
                detail: format!(
                    "AMD KDS throttled us; not asking again for {}s",
                    left.as_secs().max(1)
                ),
            }
            .into());
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unavailable = |detail: String| {
            AttestError::from(Unavailable::Source {
                source: url.to_owned(),
                detail,
            })
        };
        let resp = self.http.get(url).send().await.map_err(|e| {
            unavailable(if e.is_timeout() {
                "timed out".into()
            } else {
                e.to_string()
            })
        })?;
        let status = resp.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            self.note_throttled(retry);
            return Err(Unavailable::Throttled {
                detail: format!("{url}: HTTP 429 Too Many Requests (backing off)"),
            }
            .into());
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(unavailable(format!("HTTP {status}")));
        }
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| unavailable(e.to_string()))? {
            if body.len() + chunk.len() > max {
                return Err(unavailable(format!("response larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(Some(body))
    }

    fn hold(&self, name: &str, der: &[u8]) {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() >= MAX_IN_MEMORY {
            memory.clear();
        }
        memory.insert(name.to_owned(), Arc::new(der.to_vec()));
    }

    /// Keeps a checked VCEK in memory and on disk.
    fn remember(&self, name: &str, der: &[u8]) {
        self.hold(name, der);
        if let Some(dir) = &self.cache_dir {
            let write = || -> std::io::Result<()> {
                std::fs::create_dir_all(dir)?;
                if std::fs::read_dir(dir)?.take(MAX_ON_DISK).count() >= MAX_ON_DISK {
                    return Err(std::io::Error::other(format!(
                        "the cache holds {MAX_ON_DISK} VCEKs already"
                    )));
                }
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, der)?;
                std::fs::rename(&tmp, dir.join(name))
            };
            if let Err(e) = write() {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot persist VCEK");
            }
        }
    }

    /// A VCEK held in memory, or on disk (checked again when read back).
    fn recall(&self, req: &VekRequest, product: Product, name: &str) -> Option<Vec<u8>> {
        if let Some(v) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Some(v.as_ref().clone());
        }
        let dir = self.cache_dir.as_ref()?;
        let der = read_cert(&dir.join(name)).ok().flatten()?;
        if let Err(e) = crate::certs::check_vcek_for(&self.roots, product, req, &der) {
            tracing::warn!(file = %dir.join(name).display(), error = %e, "ignoring a cached VCEK that does not check");
            return None;
        }
        self.hold(name, &der);
        Some(der)
    }
}

#[async_trait]
impl crate::crl::CrlSource for KdsClient {
    async fn fetch_crl(
        &self,
        product: Product,
        signer: Signer,
    ) -> Result<Option<Vec<u8>>, AttestError> {
        self.get_bounded(&self.crl_url(product, signer), crate::crl::MAX_CRL)
            .await
    }

    fn is_network(&self) -> bool {
        true
    }
}

#[async_trait]
impl VcekSource for KdsClient {
    async fn fetch(&self, req: &VekRequest) -> Result<Vec<u8>, AttestError> {
        if req.signer == Signer::Vlek {
            return Err(CollateralMissing::NoSource {
                detail: "a VLEK is not public on AMD KDS: it must come with the evidence".into(),
            }
            .into());
        }
        if req.chip_id == [0u8; 64] {
            return Err(CollateralMissing::NoSource {
                detail: "CHIP_ID is masked: no VCEK can be looked up; send it with the evidence"
                    .into(),
            }
            .into());
        }
        for product in req.candidates() {
            let name = req.file_name(product);
            if let Some(der) = self.recall(req, product, &name) {
                return Ok(der);
            }
            if self.not_found.get(&name).is_some() {
                continue;
            }
            let _flight = self.flights.enter(&name).await;
            if let Some(der) = self.recall(req, product, &name) {
                return Ok(der);
            }
            self.budget.take("AMD chips")?;
            match self.get(&self.vcek_url(req, product)).await? {
                Some(der) => {
                    // Kept only once it is the VCEK asked for: a bad answer
                    // (an error page served with 200, a truncated body,
                    // another chip's key) would otherwise be served from
                    // the cache for ever.
                    crate::certs::check_vcek_for(&self.roots, product, req, &der).map_err(|e| {
                        Unavailable::Source {
                            source: self.vcek_url(req, product),
                            detail: format!(
                                "AMD KDS answered {name} with a certificate that does not check: {e}"
                            ),
                        }
                    })?;
                    self.remember(&name, &der);
                    return Ok(der);
                }
                None => self
                    .not_found
                    .insert(name, "AMD KDS has no VCEK for this chip and TCB".into()),
            }
        }
        Err(CollateralMissing::NotFound {
            detail: "AMD KDS has no VCEK for this chip and TCB".into(),
        }
        .into())
    }
}
