//! dstack's prpc over HTTP (`shared/reference/dstack-wire.md` §1.1):
//! - routes: `POST`/`GET` `/prpc/{Method}` and `/prpc/KMS.{Method}`, and
//!   `GET /health`;
//! - encoding: JSON when the request is a `GET`, when the query has `json`
//!   (empty, `true` or `1`), or when the content type is JSON; protobuf
//!   otherwise. A `GET` takes its fields from the query string. An empty
//!   or `null` body is the default message; `Empty` requests ignore theirs;
//! - answers: `200` with the message; errors `400` with
//!   `{"error": "..."}` (JSON) or prpc's `ProtoError` (protobuf), as
//!   dstack's server answers.
//!
//! Every request body is read under limits before anything is decoded: at
//! most `max_request_bytes` (a larger `Content-Length` is refused before a
//! byte is read), drawn from the per-address and global budgets of bytes in
//! flight, and received within `request_timeout_secs`; each request is
//! handled within `handler_timeout_secs`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use super::wire::*;
use super::{Conn, DstackFront, RpcError};
use crate::service::limits::Limits;
use crate::service::release::Purpose;

/// How a request and its answer are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// serde JSON, bytes as hex.
    Json,
    /// protobuf, dstack's `kms` package.
    Proto,
}

/// The methods served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    GetTempCaCert,
    GetAppKey,
    SignCert,
    GetAppEnvEncryptPubKey,
    GetMeta,
    GetKmsKey,
}

impl Rpc {
    fn parse(name: &str) -> Option<Rpc> {
        let name = name.strip_prefix("KMS.").unwrap_or(name);
        Some(match name {
            "GetTempCaCert" => Rpc::GetTempCaCert,
            "GetAppKey" => Rpc::GetAppKey,
            "SignCert" => Rpc::SignCert,
            "GetAppEnvEncryptPubKey" => Rpc::GetAppEnvEncryptPubKey,
            "GetMeta" => Rpc::GetMeta,
            "GetKmsKey" => Rpc::GetKmsKey,
            _ => return None,
        })
    }

    /// What a refusal of its request is audited as (the methods that
    /// release nothing are not audited).
    fn purpose(self) -> Option<Purpose> {
        match self {
            Rpc::GetAppKey => Some(Purpose::AppKeys),
            Rpc::SignCert => Some(Purpose::AppCertificate),
            _ => None,
        }
    }
}

/// The query string's `key=value` pairs, percent-decoded (`+` is a space).
fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The encoding dstack's server would choose.
pub fn encoding(method: &Method, query: Option<&str>, content_type: Option<&str>) -> Encoding {
    if method == Method::GET {
        return Encoding::Json;
    }
    let json_query = query_pairs(query.unwrap_or(""))
        .iter()
        .any(|(k, v)| k == "json" && matches!(v.as_str(), "" | "true" | "1"));
    let json_type = content_type.is_some_and(|ct| {
        let essence = ct.split(';').next().unwrap_or("").trim();
        essence.eq_ignore_ascii_case("application/json")
            || essence.to_ascii_lowercase().ends_with("+json")
    });
    if json_query || json_type {
        Encoding::Json
    } else {
        Encoding::Proto
    }
}

/// Decodes a request message.
fn decode<T: Message + Default + DeserializeOwned>(
    enc: Encoding,
    method: &Method,
    query: Option<&str>,
    body: &[u8],
) -> Result<T, RpcError> {
    if method == Method::GET {
        let map: serde_json::Map<String, serde_json::Value> = query_pairs(query.unwrap_or(""))
            .into_iter()
            .filter(|(k, _)| k != "json")
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        return serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| RpcError::new(format!("invalid query: {e}")));
    }
    match enc {
        Encoding::Json => {
            let text = body.trim_ascii();
            if text.is_empty() || text == b"null" {
                return Ok(T::default());
            }
            serde_json::from_slice(text)
                .map_err(|e| RpcError::new(format!("invalid JSON request: {e}")))
        }
        Encoding::Proto => {
            T::decode(body).map_err(|e| RpcError::new(format!("invalid protobuf request: {e}")))
        }
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A successful answer. The encoded bytes are zeroized when the body is
/// dropped (they may hold keys).
fn encode<T: Message + Serialize>(enc: Encoding, msg: &T) -> Response<Full<Bytes>> {
    match enc {
        Encoding::Json => match serde_json::to_vec(msg) {
            Ok(v) => response(
                StatusCode::OK,
                "application/json",
                Bytes::from_owner(Zeroizing::new(v)),
            ),
            Err(e) => error(enc, &RpcError::new(format!("encoding the answer: {e}"))),
        },
        Encoding::Proto => response(
            StatusCode::OK,
            "application/octet-stream",
            Bytes::from_owner(Zeroizing::new(msg.encode_to_vec())),
        ),
    }
}

/// An error answer (HTTP 400).
pub fn error(enc: Encoding, e: &RpcError) -> Response<Full<Bytes>> {
    match enc {
        Encoding::Json => {
            let body = serde_json::to_vec_pretty(&serde_json::json!({ "error": e.0 }))
                .unwrap_or_else(|_| b"{\"error\":\"error\"}".to_vec());
            response(
                StatusCode::BAD_REQUEST,
                "application/json",
                Bytes::from(body),
            )
        }
        Encoding::Proto => response(
            StatusCode::BAD_REQUEST,
            "application/octet-stream",
            Bytes::from(
                ProtoError {
                    message: e.0.clone(),
                }
                .encode_to_vec(),
            ),
        ),
    }
}

fn not_found() -> Response<Full<Bytes>> {
    let mut r = error(Encoding::Json, &RpcError::new("not found"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The bytes of a request body and what it holds of the budgets until the
/// request is answered.
struct ReadBody {
    bytes: Vec<u8>,
    _held: Vec<OwnedSemaphorePermit>,
}

/// Reads a body of at most `max` bytes within `timeout`, drawing every
/// byte from `peer` (its address's share, if limited) and `global`.
async fn read_body<B>(
    body: B,
    max: usize,
    peer: Option<Arc<Semaphore>>,
    global: Arc<Semaphore>,
    timeout: Duration,
) -> Result<ReadBody, RpcError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let read = async move {
        let mut body = body;
        let mut out = ReadBody {
            bytes: Vec::new(),
            _held: Vec::new(),
        };
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| RpcError::new(format!("reading the request: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if out.bytes.len().saturating_add(data.len()) > max {
                return Err(RpcError::new(format!(
                    "request body larger than {max} bytes"
                )));
            }
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            if let Some(p) = &peer {
                let permit = p.clone().try_acquire_many_owned(n).map_err(|_| {
                    RpcError::new("this client holds too many request bytes; try again")
                })?;
                out._held.push(permit);
            }
            let permit = global.clone().try_acquire_many_owned(n).map_err(|_| {
                RpcError::new("the service holds too many request bytes; try again")
            })?;
            out._held.push(permit);
            out.bytes.extend_from_slice(&data);
        }
        Ok(out)
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| {
        RpcError::new(format!(
            "the request body was not received within {} s",
            timeout.as_secs()
        ))
    })?
}

/// Handles one HTTP request.
pub async fn handle<B>(
    front: Arc<DstackFront>,
    conn: Conn,
    peer_bytes: Option<Arc<Semaphore>>,
    req: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query();
    if parts.method != Method::GET && parts.method != Method::POST {
        return not_found();
    }
    if path == "/health" {
        return if parts.method == Method::GET {
            response(StatusCode::OK, "text/plain", Bytes::from_static(b"OK"))
        } else {
            not_found()
        };
    }
    let Some(name) = path.strip_prefix("/prpc/") else {
        return not_found();
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let enc = encoding(&parts.method, query, content_type);
    let Some(rpc) = Rpc::parse(name) else {
        return error(enc, &RpcError::new(format!("unknown method {name:?}")));
    };
    let max = front.max_request_bytes;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > max as u64) {
        Err(RpcError::new(format!(
            "request body larger than {max} bytes"
        )))
    } else {
        read_body(
            body,
            max,
            peer_bytes,
            front.budget.clone(),
            Limits::secs(front.limits.request_timeout_secs),
        )
        .await
    };
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            // Refused before anything was decoded; audited like any refusal
            // of a key or certificate request.
            let e = match rpc.purpose() {
                Some(p) => front.unverified(p, "none", bad_request(e)),
                None => e,
            };
            return error(enc, &e);
        }
    };
    let handler_timeout = Limits::secs(front.limits.handler_timeout_secs);
    let answer = tokio::time::timeout(
        handler_timeout,
        dispatch(&front, &conn, rpc, enc, &parts.method, query, &body.bytes),
    )
    .await;
    drop(body);
    match answer {
        Ok(r) => r,
        Err(_) => error(
            enc,
            &RpcError::new(format!(
                "the request was not handled within {} s",
                handler_timeout.as_secs()
            )),
        ),
    }
}

async fn dispatch(
    front: &DstackFront,
    conn: &Conn,
    rpc: Rpc,
    enc: Encoding,
    method: &Method,
    query: Option<&str>,
    body: &[u8],
) -> Response<Full<Bytes>> {
    let out = match rpc {
        Rpc::GetTempCaCert => Ok(encode(enc, &front.get_temp_ca_cert())),
        Rpc::GetMeta => Ok(encode(enc, &front.get_meta())),
        Rpc::GetAppKey => match decode::<GetAppKeyRequest>(enc, method, query, body) {
            Ok(req) => front.get_app_key(conn, req).await.map(|r| encode(enc, &r)),
            Err(e) => Err(front.unverified(Purpose::AppKeys, "none", bad_request(e))),
        },
        Rpc::SignCert => match decode::<SignCertRequest>(enc, method, query, body) {
            Ok(req) => front.sign_cert(req).await.map(|r| encode(enc, &r)),
            Err(e) => Err(front.unverified(Purpose::AppCertificate, "none", bad_request(e))),
        },
        Rpc::GetAppEnvEncryptPubKey => decode::<AppId>(enc, method, query, body)
            .and_then(|req| front.get_app_env_encrypt_pub_key(req))
            .map(|r| encode(enc, &r)),
        Rpc::GetKmsKey => Err(RpcError::new(
            "GetKmsKey is not served: replicas of this KMS onboard through its own attested protocol",
        )),
    };
    out.unwrap_or_else(|e| error(enc, &e))
}

/// A request the service could not read, as the refusal it is audited as.
fn bad_request(e: RpcError) -> attest_core::AttestError {
    attest_core::Malformed::BadRequest { detail: e.0 }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_follows_dstacks_rules() {
        let post = Method::POST;
        assert_eq!(encoding(&post, Some("json"), None), Encoding::Json);
        assert_eq!(encoding(&post, Some("json="), None), Encoding::Json);
        assert_eq!(encoding(&post, Some("a=b&json=1"), None), Encoding::Json);
        assert_eq!(encoding(&post, Some("json=true"), None), Encoding::Json);
        assert_eq!(encoding(&post, Some("json=false"), None), Encoding::Proto);
        assert_eq!(encoding(&post, None, None), Encoding::Proto);
        assert_eq!(
            encoding(&post, None, Some("application/json; charset=utf-8")),
            Encoding::Json
        );
        assert_eq!(
            encoding(&post, None, Some("application/octet-stream")),
            Encoding::Proto
        );
        assert_eq!(encoding(&Method::GET, None, None), Encoding::Json);
    }

    #[test]
    fn requests_decode_from_json_protobuf_and_query() {
        let post = Method::POST;
        let r: GetAppKeyRequest = decode(Encoding::Json, &post, None, b"").unwrap();
        assert_eq!(r, GetAppKeyRequest::default());
        let r: GetAppKeyRequest = decode(Encoding::Json, &post, None, b" null ").unwrap();
        assert_eq!(r.api_version, 0);
        let r: GetAppKeyRequest = decode(
            Encoding::Json,
            &post,
            None,
            br#"{"api_version":1,"vm_config":"{}","later":true}"#,
        )
        .unwrap();
        assert_eq!((r.api_version, r.vm_config.as_str()), (1, "{}"));
        let bytes = GetAppKeyRequest {
            api_version: 1,
            vm_config: String::new(),
        }
        .encode_to_vec();
        let r: GetAppKeyRequest = decode(Encoding::Proto, &post, None, &bytes).unwrap();
        assert_eq!(r.api_version, 1);
        let r: AppId = decode(
            Encoding::Json,
            &Method::GET,
            Some("json&app_id=0x0102"),
            b"ignored",
        )
        .unwrap();
        assert_eq!(r.app_id, vec![1, 2]);
        assert_eq!(
            decode::<GetAppKeyRequest>(Encoding::Json, &post, None, b"{")
                .unwrap_err()
                .0,
            "invalid JSON request: EOF while parsing an object at line 1 column 1"
        );
        assert!(decode::<GetAppKeyRequest>(Encoding::Proto, &post, None, &[0xff]).is_err());
    }

    #[test]
    fn methods_with_and_without_the_service_prefix() {
        assert_eq!(Rpc::parse("KMS.GetAppKey"), Some(Rpc::GetAppKey));
        assert_eq!(Rpc::parse("GetAppKey"), Some(Rpc::GetAppKey));
        assert_eq!(Rpc::parse("Admin.GetAppKey"), None);
        assert_eq!(Rpc::parse("getappkey"), None);
    }
}
