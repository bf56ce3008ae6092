//! Raw TPM 2.0 commands, written and read as bytes (TPM 2.0 Library Part 3;
//! big-endian; no TSS, no C library): what an Azure CVM's guest needs from
//! its vTPM (`/dev/tpmrm0`), and what a test needs to provision one.
//!
//! Every response is bounded ([`MAX_RESPONSE`]) and parsed with checks; a
//! TPM error code becomes [`ClientError::Evidence`] naming the command.

use std::io::{Read, Write};
use std::path::Path;

use attest_core::reader::Reader;

use crate::ClientError;

/// The kernel's TPM device with its resource manager.
pub const DEFAULT_DEVICE: &str = "/dev/tpmrm0";
/// Largest response read (a TPM's own limit is 4 KiB; vTPMs use 4 KiB too).
pub const MAX_RESPONSE: usize = 8192;

/// `TPM_ST_NO_SESSIONS`.
const ST_NO_SESSIONS: u16 = 0x8001;
/// `TPM_ST_SESSIONS`.
const ST_SESSIONS: u16 = 0x8002;
/// `TPM_RS_PW`: the password session.
const RS_PW: u32 = 0x4000_0009;
/// `TPM_RH_OWNER`.
pub const RH_OWNER: u32 = 0x4000_0001;
/// `TPM_RH_ENDORSEMENT`.
pub const RH_ENDORSEMENT: u32 = 0x4000_000B;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000B;
/// `TPM_ALG_NULL`.
pub const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_RSA`.
pub const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_RSASSA`.
pub const ALG_RSASSA: u16 = 0x0014;

/// Command codes used here.
pub mod cc {
    /// TPM2_NV_DefineSpace.
    pub const NV_DEFINE_SPACE: u32 = 0x0000_012A;
    /// TPM2_EvictControl.
    pub const EVICT_CONTROL: u32 = 0x0000_0120;
    /// TPM2_CreatePrimary.
    pub const CREATE_PRIMARY: u32 = 0x0000_0131;
    /// TPM2_NV_Write.
    pub const NV_WRITE: u32 = 0x0000_0137;
    /// TPM2_NV_Read.
    pub const NV_READ: u32 = 0x0000_014E;
    /// TPM2_Quote.
    pub const QUOTE: u32 = 0x0000_0158;
    /// TPM2_FlushContext.
    pub const FLUSH_CONTEXT: u32 = 0x0000_0165;
    /// TPM2_NV_ReadPublic.
    pub const NV_READ_PUBLIC: u32 = 0x0000_0169;
    /// TPM2_ReadPublic.
    pub const READ_PUBLIC: u32 = 0x0000_0173;
    /// TPM2_GetCapability.
    pub const GET_CAPABILITY: u32 = 0x0000_017A;
    /// TPM2_PCR_Read.
    pub const PCR_READ: u32 = 0x0000_017E;
    /// TPM2_PCR_Extend.
    pub const PCR_EXTEND: u32 = 0x0000_0182;
}

/// `TPM_RC_HANDLE` for parameter 1 of NV_ReadPublic: no such index.
const RC_HANDLE_1: u32 = 0x18B;

/// Where commands go: the kernel device, or (tests) a simulator's socket.
pub trait Transport {
    /// Sends one command and returns the whole response.
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, ClientError>;
}

fn err(m: impl Into<String>) -> ClientError {
    ClientError::Evidence(m.into())
}

/// Reads one response: its header's size, then the rest, bounded.
pub fn read_response(r: &mut impl Read) -> Result<Vec<u8>, ClientError> {
    let mut head = [0u8; 10];
    r.read_exact(&mut head)
        .map_err(|e| err(format!("TPM response: {e}")))?;
    let size = u32::from_be_bytes([head[2], head[3], head[4], head[5]]) as usize;
    if !(10..=MAX_RESPONSE).contains(&size) {
        return Err(err(format!("TPM response size {size} is out of bounds")));
    }
    let mut out = head.to_vec();
    out.resize(size, 0);
    r.read_exact(&mut out[10..])
        .map_err(|e| err(format!("TPM response: {e}")))?;
    Ok(out)
}

/// A TPM character device (`/dev/tpmrm0`): one write per command, one read
/// per response.
pub struct Device(std::fs::File);

impl Device {
    /// Opens the device read-write.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map(Device)
            .map_err(|e| err(format!("{}: {e}", path.display())))
    }
}

impl Transport for Device {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.0
            .write_all(command)
            .map_err(|e| err(format!("TPM device write: {e}")))?;
        // The kernel returns the whole response in one read.
        let mut buf = vec![0u8; MAX_RESPONSE];
        let n = self
            .0
            .read(&mut buf)
            .map_err(|e| err(format!("TPM device read: {e}")))?;
        buf.truncate(n);
        let size = buf
            .get(2..6)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        if size != Some(n) {
            return Err(err(format!(
                "TPM device: a {n}-byte read does not hold the response its header announces"
            )));
        }
        Ok(buf)
    }
}

/// A stream carrying raw TPM commands (swtpm's data socket).
pub struct Stream<S>(pub S);

impl<S: Read + Write> Transport for Stream<S> {
    fn transact(&mut self, command: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.0
            .write_all(command)
            .map_err(|e| err(format!("TPM socket write: {e}")))?;
        read_response(&mut self.0)
    }
}

/// A `TPM2B`: u16 size, then the bytes.
pub fn tpm2b(b: &[u8]) -> Vec<u8> {
    let mut v = (b.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(b);
    v
}

/// `TPML_PCR_SELECTION` of SHA-256 PCRs given as a 3-byte bitmap.
pub fn sha256_selection(bitmap: [u8; 3]) -> Vec<u8> {
    let mut v = 1u32.to_be_bytes().to_vec();
    v.extend_from_slice(&ALG_SHA256.to_be_bytes());
    v.push(3);
    v.extend_from_slice(&bitmap);
    v
}

fn sized<'a>(r: &mut Reader<'a>, what: &str) -> Result<&'a [u8], ClientError> {
    let n = r.u16_be(what).map_err(|e| err(e.message()))?;
    r.take(usize::from(n), what).map_err(|e| err(e.message()))
}

fn map<T>(r: Result<T, attest_core::AttestError>) -> Result<T, ClientError> {
    r.map_err(|e| err(e.message()))
}

/// A TPM behind a [`Transport`].
pub struct Tpm<T> {
    t: T,
}

impl<T: Transport> Tpm<T> {
    /// Commands go through `t`.
    pub fn new(t: T) -> Self {
        Tpm { t }
    }

    /// The transport.
    pub fn transport(&mut self) -> &mut T {
        &mut self.t
    }

    /// Runs a command: `handles`, a password session with an empty password
    /// for each of the first `auths` handles, `params`. Returns the
    /// response's handles and its parameters.
    pub fn command(
        &mut self,
        code: u32,
        handles: &[u32],
        auths: usize,
        params: &[u8],
        response_handles: usize,
    ) -> Result<(Vec<u32>, Vec<u8>), ClientError> {
        let mut body = Vec::new();
        for h in handles {
            body.extend_from_slice(&h.to_be_bytes());
        }
        if auths > 0 {
            // TPMS_AUTH_COMMAND: handle, nonce (empty), attributes, hmac.
            let one = [&RS_PW.to_be_bytes()[..], &[0, 0], &[0], &[0, 0]].concat();
            body.extend_from_slice(&((one.len() * auths) as u32).to_be_bytes());
            for _ in 0..auths {
                body.extend_from_slice(&one);
            }
        }
        body.extend_from_slice(params);
        let tag = if auths > 0 {
            ST_SESSIONS
        } else {
            ST_NO_SESSIONS
        };
        let mut cmd = tag.to_be_bytes().to_vec();
        cmd.extend_from_slice(&((10 + body.len()) as u32).to_be_bytes());
        cmd.extend_from_slice(&code.to_be_bytes());
        cmd.extend_from_slice(&body);
        let resp = self.t.transact(&cmd)?;

        let mut r = Reader::new(&resp, "TPM response");
        let rtag = map(r.u16_be("tag"))?;
        let size = map(r.u32_be("size"))? as usize;
        let rc = map(r.u32_be("responseCode"))?;
        if size != resp.len() {
            return Err(err(format!(
                "TPM response to {code:#x}: size {size}, {} bytes received",
                resp.len()
            )));
        }
        if rc != 0 {
            return Err(err(format!(
                "TPM command {code:#x} failed with response code {rc:#x}"
            )));
        }
        let mut out_handles = Vec::with_capacity(response_handles);
        for _ in 0..response_handles {
            out_handles.push(map(r.u32_be("handle"))?);
        }
        let params = if rtag == ST_SESSIONS {
            let n = map(r.u32_be("parameterSize"))? as usize;
            map(r.take(n, "parameters"))?.to_vec()
        } else {
            r.rest().to_vec()
        };
        Ok((out_handles, params))
    }

    /// The data size of NV index `index`, or `None` when it is not defined.
    pub fn nv_size(&mut self, index: u32) -> Result<Option<usize>, ClientError> {
        match self.command(cc::NV_READ_PUBLIC, &[index], 0, &[], 0) {
            Ok((_, p)) => {
                let mut r = Reader::new(&p, "NV_ReadPublic");
                let public = sized(&mut r, "nvPublic")?;
                let mut r = Reader::new(public, "TPMS_NV_PUBLIC");
                map(r.u32_be("nvIndex"))?;
                map(r.u16_be("nameAlg"))?;
                map(r.u32_be("attributes"))?;
                sized(&mut r, "authPolicy")?;
                Ok(Some(usize::from(map(r.u16_be("dataSize"))?)))
            }
            Err(ClientError::Evidence(m)) if m.ends_with(&format!("{RC_HANDLE_1:#x}")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `TPM_PT_NV_BUFFER_MAX`: the largest NV read or write, clamped to
    /// 64..=1024 (1024 when the TPM does not say).
    pub fn nv_buffer_max(&mut self) -> usize {
        let params = [6u32, 0x100 + 44, 1]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect::<Vec<u8>>();
        let value = self
            .command(cc::GET_CAPABILITY, &[], 0, &params, 0)
            .ok()
            .and_then(|(_, p)| {
                // moreData, capability, count, {property, value}.
                let v = p.get(13..17)?;
                Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]]) as usize)
            });
        value.unwrap_or(1024).clamp(64, 1024)
    }

    /// Reads all of NV index `index` with owner auth (as Azure's guest
    /// tools do), in chunks of at most `chunk` bytes; the first read is at
    /// offset 0.
    pub fn nv_read(&mut self, index: u32, chunk: usize) -> Result<Vec<u8>, ClientError> {
        let size = self
            .nv_size(index)?
            .ok_or_else(|| err(format!("NV index {index:#x} is not defined")))?;
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let n = (size - out.len()).min(chunk);
            let params = [(n as u16).to_be_bytes(), (out.len() as u16).to_be_bytes()].concat();
            let (_, p) = self.command(cc::NV_READ, &[RH_OWNER, index], 1, &params, 0)?;
            let mut r = Reader::new(&p, "NV_Read");
            let data = sized(&mut r, "data")?;
            if data.len() != n {
                return Err(err(format!(
                    "NV_Read of {index:#x}: asked for {n} bytes, got {}",
                    data.len()
                )));
            }
            out.extend_from_slice(data);
        }
        Ok(out)
    }

    /// Defines NV index `index` of `size` bytes, owner-read/write, empty
    /// auth (as Azure's guest tools define the user-data index).
    pub fn nv_define_owner(&mut self, index: u32, size: u16) -> Result<(), ClientError> {
        // TPMA_NV_OWNERWRITE (1<<1) | TPMA_NV_OWNERREAD (1<<17) |
        // TPMA_NV_AUTHREAD (1<<18) | TPMA_NV_AUTHWRITE (1<<2).
        let attributes: u32 = (1 << 1) | (1 << 2) | (1 << 17) | (1 << 18);
        let mut public = index.to_be_bytes().to_vec();
        public.extend_from_slice(&ALG_SHA256.to_be_bytes());
        public.extend_from_slice(&attributes.to_be_bytes());
        public.extend_from_slice(&tpm2b(&[]));
        public.extend_from_slice(&size.to_be_bytes());
        let params = [tpm2b(&[]), tpm2b(&public)].concat();
        self.command(cc::NV_DEFINE_SPACE, &[RH_OWNER], 1, &params, 0)
            .map(|_| ())
    }

    /// Writes `data` at offset 0 of NV index `index` with owner auth, in
    /// chunks of at most `chunk` bytes.
    pub fn nv_write_owner(
        &mut self,
        index: u32,
        data: &[u8],
        chunk: usize,
    ) -> Result<(), ClientError> {
        let mut off = 0;
        while off < data.len() {
            let n = (data.len() - off).min(chunk);
            let params = [
                tpm2b(&data[off..off + n]),
                (off as u16).to_be_bytes().to_vec(),
            ]
            .concat();
            self.command(cc::NV_WRITE, &[RH_OWNER, index], 1, &params, 0)?;
            off += n;
        }
        Ok(())
    }

    /// TPM2_Quote with `key` (scheme NULL: the key's own) over the SHA-256
    /// PCRs of `bitmap`: the `TPMS_ATTEST` bytes and the raw RSASSA
    /// signature.
    pub fn quote(
        &mut self,
        key: u32,
        nonce: &[u8],
        bitmap: [u8; 3],
    ) -> Result<(Vec<u8>, Vec<u8>), ClientError> {
        let params = [
            tpm2b(nonce),
            ALG_NULL.to_be_bytes().to_vec(),
            sha256_selection(bitmap),
        ]
        .concat();
        let (_, p) = self.command(cc::QUOTE, &[key], 1, &params, 0)?;
        let mut r = Reader::new(&p, "Quote");
        let attest = sized(&mut r, "quoted")?.to_vec();
        let alg = map(r.u16_be("sigAlg"))?;
        let hash = map(r.u16_be("hash"))?;
        if (alg, hash) != (ALG_RSASSA, ALG_SHA256) {
            return Err(err(format!(
                "the AK signed with algorithm {alg:#x}/{hash:#x}, not RSASSA/SHA-256"
            )));
        }
        let sig = sized(&mut r, "signature")?.to_vec();
        Ok((attest, sig))
    }

    /// The 24 SHA-256 PCRs (TPM2_PCR_Read returns at most 8 per call).
    pub fn pcrs(&mut self) -> Result<[[u8; 32]; 24], ClientError> {
        let mut out = [[0u8; 32]; 24];
        let mut done = [false; 24];
        for _ in 0..8 {
            let mut bitmap = [0u8; 3];
            for (i, d) in done.iter().enumerate() {
                if !d {
                    bitmap[i / 8] |= 1 << (i % 8);
                }
            }
            if bitmap == [0; 3] {
                return Ok(out);
            }
            let (_, p) = self.command(cc::PCR_READ, &[], 0, &sha256_selection(bitmap), 0)?;
            let mut r = Reader::new(&p, "PCR_Read");
            map(r.u32_be("pcrUpdateCounter"))?;
            let count = map(r.u32_be("selection count"))?;
            let mut selected = Vec::new();
            for _ in 0..count.min(4) {
                let alg = map(r.u16_be("hash"))?;
                let n = map(r.u8("sizeofSelect"))?;
                let bits = map(r.take(usize::from(n), "pcrSelect"))?;
                if alg != ALG_SHA256 {
                    continue;
                }
                for i in 0..24.min(bits.len() * 8) {
                    if bits[i / 8] & (1 << (i % 8)) != 0 {
                        selected.push(i);
                    }
                }
            }
            let digests = map(r.u32_be("digest count"))? as usize;
            if digests != selected.len() {
                return Err(err("PCR_Read: digest count does not match the selection"));
            }
            for i in selected {
                let d = sized(&mut r, "digest")?;
                out[i] = d
                    .try_into()
                    .map_err(|_| err("PCR_Read: a SHA-256 PCR is not 32 bytes"))?;
                done[i] = true;
            }
        }
        if done.iter().all(|d| *d) {
            Ok(out)
        } else {
            Err(err("PCR_Read did not return every SHA-256 PCR"))
        }
    }

    /// Extends SHA-256 PCR `pcr` with `digest`.
    pub fn pcr_extend(&mut self, pcr: u32, digest: &[u8; 32]) -> Result<(), ClientError> {
        let params = [&1u32.to_be_bytes()[..], &ALG_SHA256.to_be_bytes(), digest].concat();
        self.command(cc::PCR_EXTEND, &[pcr], 1, &params, 0)
            .map(|_| ())
    }

    /// The RSA modulus of a loaded or persistent key.
    pub fn rsa_modulus(&mut self, handle: u32) -> Result<Vec<u8>, ClientError> {
        let (_, p) = self.command(cc::READ_PUBLIC, &[handle], 0, &[], 0)?;
        let mut r = Reader::new(&p, "ReadPublic");
        let public = sized(&mut r, "outPublic")?;
        rsa_unique(public)
    }
}

/// The `unique` (modulus) of an RSA `TPMT_PUBLIC`.
pub fn rsa_unique(public: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut r = Reader::new(public, "TPMT_PUBLIC");
    if map(r.u16_be("type"))? != ALG_RSA {
        return Err(err("the key is not an RSA key"));
    }
    map(r.u16_be("nameAlg"))?;
    map(r.u32_be("objectAttributes"))?;
    sized(&mut r, "authPolicy")?;
    if map(r.u16_be("symmetric"))? != ALG_NULL {
        map(r.u16_be("keyBits"))?;
        map(r.u16_be("mode"))?;
    }
    if map(r.u16_be("scheme"))? != ALG_NULL {
        map(r.u16_be("scheme hash"))?;
    }
    map(r.u16_be("keyBits"))?;
    map(r.u32_be("exponent"))?;
    Ok(sized(&mut r, "unique")?.to_vec())
}
