//! Azure's instance metadata service (IMDS), the source of an Azure CVM's
//! endorsements: the VCEK (`GET /metadata/THIM/amd/certification`) and TD
//! quotes (`POST /acc/tdquote`). A minimal HTTP/1.1 client over a plain
//! TCP socket (IMDS is link-local and HTTP only), every read bounded.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::ClientError;

/// Azure's IMDS address.
pub const AZURE_IMDS: &str = "169.254.169.254:80";
/// Base64url with or without padding.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
/// Largest IMDS response read.
const MAX_BODY: usize = 256 * 1024;

/// Where the endorsements come from.
pub trait Imds {
    /// The VCEK (DER), or `None` when the service has none for this VM.
    fn vcek(&self) -> Result<Option<Vec<u8>>, ClientError>;
    /// A TD quote for `tdreport` (the HCL report's 1024-byte TDREPORT).
    fn td_quote(&self, tdreport: &[u8]) -> Result<Vec<u8>, ClientError>;
}

fn err(m: impl Into<String>) -> ClientError {
    ClientError::Evidence(m.into())
}

/// IMDS over HTTP at `addr` (`host:port`).
#[derive(Clone, Debug)]
pub struct HttpImds {
    /// `host:port`.
    pub addr: String,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl Default for HttpImds {
    fn default() -> Self {
        HttpImds {
            addr: AZURE_IMDS.into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl HttpImds {
    /// One request; the status and the body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let addr = self
            .addr
            .to_socket_addrs()
            .map_err(|e| err(format!("IMDS {}: {e}", self.addr)))?
            .next()
            .ok_or_else(|| err(format!("IMDS {}: no address", self.addr)))?;
        let mut s = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| err(format!("IMDS {}: {e}", self.addr)))?;
        let io = |e: std::io::Error| err(format!("IMDS {}{path}: {e}", self.addr));
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nMetadata: true\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;
        let mut resp = Vec::new();
        s.take(MAX_BODY as u64 + 8192)
            .read_to_end(&mut resp)
            .map_err(io)?;
        parse_response(&resp)
    }
}

/// Status and body of an HTTP/1.1 response read to the end (identity or
/// chunked transfer coding).
fn parse_response(resp: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| err("IMDS: no end of headers"))?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| err("IMDS: no status line"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let raw = &resp[split + 4..];
    let body = if chunked { dechunk(raw)? } else { raw.to_vec() };
    if body.len() > MAX_BODY {
        return Err(err("IMDS: response too large"));
    }
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| err("IMDS: bad chunk"))?;
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok())
            .ok_or_else(|| err("IMDS: bad chunk size"))?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size > MAX_BODY || raw.len() < size + 2 || out.len() + size > MAX_BODY {
            return Err(err("IMDS: truncated or oversized chunk"));
        }
        out.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

impl Imds for HttpImds {
    fn vcek(&self) -> Result<Option<Vec<u8>>, ClientError> {
        let (status, body) = self.request("GET", "/metadata/THIM/amd/certification", None)?;
        if status == 404 {
            return Ok(None);
        }
        if status != 200 {
            return Err(err(format!("IMDS THIM: HTTP {status}")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| err(format!("IMDS THIM: {e}")))?;
        let pem = v["vcekCert"]
            .as_str()
            .ok_or_else(|| err("IMDS THIM: no vcekCert"))?;
        crate::vtpm::first_pem_der(pem)
            .map(Some)
            .ok_or_else(|| err("IMDS THIM: vcekCert is not a PEM certificate"))
    }

    fn td_quote(&self, tdreport: &[u8]) -> Result<Vec<u8>, ClientError> {
        let req = serde_json::json!({ "report": URL_SAFE_NO_PAD.encode(tdreport) });
        let (status, body) =
            self.request("POST", "/acc/tdquote", Some(req.to_string().as_bytes()))?;
        if status != 200 {
            return Err(err(format!("IMDS tdquote: HTTP {status}")));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| err(format!("IMDS tdquote: {e}")))?;
        let q = v["quote"]
            .as_str()
            .ok_or_else(|| err("IMDS tdquote: no quote"))?;
        B64URL
            .decode(q)
            .map_err(|e| err(format!("IMDS tdquote: quote is not base64url: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap();
        assert_eq!(r, (200, b"hi".to_vec()));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;x\r\n!\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r, (404, b"hi!".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\nx")
                .is_err()
        );
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }
}
