//! Request bodies: read within the time and size bounds, then decoded per
//! `Content-Encoding` (identity, `gzip`, `zstd`) into at most
//! `max_body_bytes`. A body that inflates beyond that (a decompression
//! bomb) is refused with 413 after at most `max_body_bytes + 1` bytes of
//! output: bounded time, and bounded memory (the output buffer, gzip's
//! 32 KiB window, a zstd window of at most 2^[`ZSTD_WINDOW_LOG_MAX`]).
//! The raw bytes stay available: a body signature covers the body as sent.

use std::io::Read;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};

use super::budget::Reservation;
use super::{ApiError, RequestLimits};

/// The largest zstd window a body may use (2 MiB): frames that need a
/// larger one are refused (413) rather than given the memory.
pub const ZSTD_WINDOW_LOG_MAX: u32 = 21;

/// A body's encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

impl Encoding {
    /// From `Content-Encoding`; 415 for anything else (or a chain of them).
    pub fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let text = String::from_utf8_lossy(v.as_bytes());
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "zstd" => Ok(Encoding::Zstd),
            other => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!(
                    "Content-Encoding {:?} is not supported: send identity, gzip or zstd",
                    other.chars().take(64).collect::<String>()
                ),
            )),
        }
    }
}

/// Reads the body as sent: at most `max_body_bytes` within `body_timeout`,
/// each chunk held in `held` as it arrives (beyond the budget: 503).
pub async fn read_raw(
    limits: &RequestLimits,
    body: Body,
    held: &mut Reservation,
) -> Result<Bytes, ApiError> {
    use futures::StreamExt;
    let max = limits.max_body_bytes;
    let read = async {
        let mut stream = body.into_data_stream();
        // One chunk is the common case: it is kept as it came.
        let mut first: Option<Bytes> = None;
        let mut more = bytes::BytesMut::new();
        let mut len = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("the body could not be read: {e}"),
                )
            })?;
            if len + chunk.len() > max {
                return Err(too_large(max));
            }
            held.add(chunk.len())?;
            len += chunk.len();
            match first.take() {
                None if more.is_empty() => first = Some(chunk),
                None => more.extend_from_slice(&chunk),
                Some(f) => {
                    more.reserve(len);
                    more.extend_from_slice(&f);
                    more.extend_from_slice(&chunk);
                }
            }
        }
        Ok(match first {
            Some(f) => f,
            None => more.freeze(),
        })
    };
    match tokio::time::timeout(limits.body_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the body did not arrive within {}",
                humantime::format_duration(limits.body_timeout)
            ),
        )),
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes"),
    )
}

/// Decodes `raw` into at most `max` bytes. `held` holds `raw`; it holds
/// `max` more while decoding (the output's size is unknown until then),
/// and what the output takes once decoded (`raw` is gone then).
pub fn decode(
    encoding: Encoding,
    raw: Bytes,
    max: usize,
    held: &mut Reservation,
) -> Result<Bytes, ApiError> {
    if encoding == Encoding::Identity {
        return decode_held(encoding, raw, max);
    }
    held.add(max)?;
    let decoded = decode_held(encoding, raw, max)?;
    // The output's buffer grew by doubling: at most twice its length.
    held.hold(decoded.len().saturating_mul(2).min(max + 1))?;
    Ok(decoded)
}

fn decode_held(encoding: Encoding, raw: Bytes, max: usize) -> Result<Bytes, ApiError> {
    let corrupt = |what: &str, e: std::io::Error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_encoding",
            format!("the body is not valid {what}: {e}"),
        )
    };
    match encoding {
        Encoding::Identity => {
            if raw.len() > max {
                return Err(too_large(max));
            }
            Ok(raw)
        }
        Encoding::Gzip => {
            let reader = flate2::read::MultiGzDecoder::new(&raw[..]);
            bounded(reader, max, raw.len()).map_err(|e| match e {
                Bounded::Over => too_large_decoded(max),
                Bounded::Io(e) => corrupt("gzip", e),
            })
        }
        Encoding::Zstd => {
            let mut reader = zstd::stream::read::Decoder::with_buffer(&raw[..])
                .map_err(|e| corrupt("zstd", e))?;
            reader
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| corrupt("zstd", e))?;
            bounded(reader, max, raw.len()).map_err(|e| match e {
                Bounded::Over => too_large_decoded(max),
                Bounded::Io(e) if e.to_string().contains("Frame requires too much memory") => {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "the zstd frame needs a window larger than {} bytes",
                            1u64 << ZSTD_WINDOW_LOG_MAX
                        ),
                    )
                }
                Bounded::Io(e) => corrupt("zstd", e),
            })
        }
    }
}

fn too_large_decoded(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes once decompressed"),
    )
}

enum Bounded {
    Over,
    Io(std::io::Error),
}

/// Reads `reader` to its end into at most `max` bytes.
fn bounded(reader: impl Read, max: usize, hint: usize) -> Result<Bytes, Bounded> {
    let mut out = Vec::with_capacity(
        (hint.saturating_mul(4))
            .max(4 << 10)
            .min(max.saturating_add(1)),
    );
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(Bounded::Io)?;
    if out.len() > max {
        return Err(Bounded::Over);
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn decodes_within_the_bound_and_refuses_bombs() {
        let text = br#"{"color":"red"}"#;
        assert_eq!(
            &decode_held(Encoding::Gzip, gzip(text), 100).unwrap()[..],
            text
        );
        let z = Bytes::from(zstd::encode_all(&text[..], 3).unwrap());
        assert_eq!(&decode_held(Encoding::Zstd, z, 100).unwrap()[..], text);
        assert_eq!(
            decode_held(Encoding::Identity, Bytes::from_static(text), 4)
                .unwrap_err()
                .status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        // 64 MiB of zeros in a few KB: refused after max + 1 bytes.
        let bomb = gzip(&vec![0u8; 64 << 20]);
        assert!(bomb.len() < 100 << 10, "{}", bomb.len());
        let t = std::time::Instant::now();
        let e = decode_held(Encoding::Gzip, bomb, 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let zbomb = Bytes::from(zstd::encode_all(&vec![0u8; 64 << 20][..], 19).unwrap());
        let e = decode_held(Encoding::Zstd, zbomb, 1 << 20).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        let e = decode_held(Encoding::Gzip, Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_ENCODING, "br".parse().unwrap());
        assert_eq!(
            Encoding::of(&h).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
    }
}
