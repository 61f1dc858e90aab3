//! The fake S3 behind GetFileUploadUrls/GetFileDownloadUrls.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use sha2::Digest;
use support::*;

struct Urls {
    upload: String,
    fields: Map<String, Value>,
    download: String,
    key: String,
    key_md5: String,
}

async fn urls(t: &TestEmulator) -> Urls {
    let id = t.client.ok("createEnvironment", json!({})).await["EnvironmentId"]
        .as_str()
        .unwrap()
        .to_owned();
    let v = t
        .client
        .ok(
            "getFileUploadUrls",
            json!({"EnvironmentId": id, "FileUploadPath": "/tmp/data.bin"}),
        )
        .await;
    Urls {
        upload: v["FileUploadPresignedUrl"].as_str().unwrap().to_owned(),
        fields: v["FileUploadPresignedFields"].as_object().unwrap().clone(),
        download: v["FileDownloadPresignedUrl"].as_str().unwrap().to_owned(),
        key: v["FileDownloadPresignedKey"].as_str().unwrap().to_owned(),
        key_md5: v["FileDownloadPresignedKeyHash"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

const BOUNDARY: &str = "----cloudshellrsboundary7MA4YWxkTrZu0gW";

/// A multipart/form-data body: text fields in order, then the file part.
fn form(fields: &[(String, String)], file_part: &str, content: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{file_part}\"; filename=\"data.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn field_list(u: &Urls) -> Vec<(String, String)> {
    u.fields
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

async fn post(
    t: &TestEmulator,
    url: &str,
    body: Vec<u8>,
) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = t
        .client
        .http
        .post(url)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let s = resp.status().as_u16();
    let h = resp.headers().clone();
    (s, h, resp.text().await.unwrap())
}

async fn get(t: &TestEmulator, url: &str, headers: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut req = t.client.http.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

fn s3_code(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let start = text.find("<Code>").map(|i| i + 6).unwrap_or(0);
    let end = text.find("</Code>").unwrap_or(start);
    text[start..end].to_owned()
}

const SSE_KEY: &str = "x-amz-server-side-encryption-customer-key";

#[tokio::test]
async fn upload_then_download_with_sse_c() {
    let t = TestEmulator::start(Timings::instant()).await;
    let u = urls(&t).await;
    // 3 MiB: larger than axum's default body limit.
    let content: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let (s, h, body) = post(&t, &u.upload, form(&field_list(&u), "file", &content)).await;
    assert_eq!(s, 204, "{body}");
    assert_eq!(
        h["etag"].to_str().unwrap(),
        format!("\"{}\"", hex::encode(md5::Md5::digest(&content)))
    );

    // GOTRACE style: only the key header.
    let (s, got) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!(s, 200);
    assert!(got == content, "downloaded bytes differ");
    // CSI style: algorithm + key; and all three.
    let (s, got) = get(
        &t,
        &u.download,
        &[
            ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            (SSE_KEY, &u.key),
            ("x-amz-server-side-encryption-customer-key-MD5", &u.key_md5),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(got.len(), content.len());

    // Without the key, with another key, with a wrong MD5.
    let (s, b) = get(&t, &u.download, &[]).await;
    assert_eq!((s, s3_code(&b).as_str()), (400, "InvalidRequest"));
    let other = STANDARD.encode([7u8; 32]);
    let (s, b) = get(&t, &u.download, &[(SSE_KEY, &other)]).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "AccessDenied"));
    let (s, b) = get(
        &t,
        &u.download,
        &[
            (SSE_KEY, &u.key),
            (
                "x-amz-server-side-encryption-customer-key-MD5",
                "AAAAAAAAAAAAAAAAAAAAAA==",
            ),
        ],
    )
    .await;
    assert_eq!((s, s3_code(&b).as_str()), (400, "InvalidArgument"));

    // A tampered URL.
    let tampered = u
        .download
        .replace("X-Amz-Expires=3600", "X-Amz-Expires=9999");
    let (s, b) = get(&t, &tampered, &[(SSE_KEY, &u.key)]).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "SignatureDoesNotMatch"));

    // Uploading again replaces the object (and its file on disk).
    let (s, _, _) = post(&t, &u.upload, form(&field_list(&u), "File", b"small")).await;
    assert_eq!(s, 204);
    let (s, got) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!((s, got.as_slice()), (200, b"small".as_slice()));
    let files = std::fs::read_dir(t.dir.path().join("objects"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

#[tokio::test]
async fn download_of_missing_object() {
    let t = TestEmulator::start(Timings::instant()).await;
    let u = urls(&t).await;
    let (s, b) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!((s, s3_code(&b).as_str()), (404, "NoSuchKey"));
}

#[tokio::test]
async fn upload_policy_is_enforced() {
    let t = TestEmulator::start(Timings::instant()).await;
    let u = urls(&t).await;
    let with = |name: &str, value: Option<&str>| -> Vec<(String, String)> {
        let mut f = field_list(&u);
        f.retain(|(k, _)| k != name);
        if let Some(v) = value {
            f.push((name.to_owned(), v.to_owned()));
        }
        f
    };
    type Fields = Vec<(String, String)>;
    let cases: Vec<(Fields, u16, &str)> = vec![
        (with("key", Some("someone-else/file")), 403, "AccessDenied"),
        (
            with(
                "Policy",
                Some(
                    &STANDARD
                        .encode("{\"expiration\":\"2999-01-01T00:00:00.000Z\",\"conditions\":[]}"),
                ),
            ),
            403,
            "SignatureDoesNotMatch",
        ),
        (
            with("X-Amz-Signature", Some(&"0".repeat(64))),
            403,
            "SignatureDoesNotMatch",
        ),
        (with("Policy", None), 400, "InvalidArgument"),
        (
            with(SSE_KEY, Some(&STANDARD.encode([1u8; 32]))),
            403,
            "AccessDenied",
        ),
        (
            with(
                "x-amz-server-side-encryption-customer-algorithm",
                Some("aws:kms"),
            ),
            403,
            "AccessDenied",
        ),
    ];
    for (fields, status, code) in cases {
        let (s, _, body) = post(&t, &u.upload, form(&fields, "file", b"data")).await;
        assert_eq!(
            (s, s3_code(body.as_bytes()).as_str()),
            (status, code),
            "{body}"
        );
    }
    // No file part.
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--{BOUNDARY}--\r\n").as_bytes());
    let (s, _, b) = post(&t, &u.upload, body).await;
    assert_eq!(
        (s, s3_code(b.as_bytes()).as_str()),
        (400, "InvalidArgument")
    );
    // Not multipart at all.
    let resp = t
        .client
        .http
        .post(&u.upload)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // Wrong bucket.
    let wrong = u.upload.replace("cloudshell-emulator-", "other-");
    let (s, _, b) = post(&t, &wrong, form(&field_list(&u), "file", b"x")).await;
    assert_eq!((s, s3_code(b.as_bytes()).as_str()), (404, "NoSuchBucket"));
    // Nothing was stored.
    let (s, _) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn size_limit_and_expiry() {
    let t = TestEmulator::start_with(Timings::instant(), |mut c| {
        c.max_object_size = 1000;
        c
    })
    .await;
    let u = urls(&t).await;
    let (s, _, b) = post(&t, &u.upload, form(&field_list(&u), "file", &[0u8; 1001])).await;
    assert_eq!((s, s3_code(b.as_bytes()).as_str()), (400, "EntityTooLarge"));
    let leftovers = std::fs::read_dir(t.dir.path().join("objects"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0);
    let (s, _, _) = post(&t, &u.upload, form(&field_list(&u), "file", &[0u8; 1000])).await;
    assert_eq!(s, 204);

    t.clock.advance(Duration::from_secs(3601));
    let (s, _, b) = post(&t, &u.upload, form(&field_list(&u), "file", b"x")).await;
    assert_eq!((s, s3_code(b.as_bytes()).as_str()), (403, "AccessDenied"));
    assert!(b.contains("expired"), "{b}");
    let (s, b) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!((s, s3_code(&b).as_str()), (403, "AccessDenied"));
}

/// With `s3_base`, the presigned URLs name that base (a relay in front of
/// the fake S3 here), and the download URL is signed for its host: both
/// requests work through the relay.
#[tokio::test]
async fn urls_name_the_configured_base() {
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", relay.local_addr().unwrap());
    let t = TestEmulator::start_with(Timings::instant(), |mut c| {
        c.s3_base = Some(format!("{base}/"));
        c
    })
    .await;
    let backend = t.handle.local_addr();
    tokio::spawn(async move {
        while let Ok((mut down, _)) = relay.accept().await {
            tokio::spawn(async move {
                let mut up = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    let u = urls(&t).await;
    assert!(
        u.upload.starts_with(&format!("{base}/_s3/")),
        "{}",
        u.upload
    );
    assert!(
        u.download.starts_with(&format!("{base}/_s3/")),
        "{}",
        u.download
    );
    let (s, _, body) = post(&t, &u.upload, form(&field_list(&u), "file", b"relayed")).await;
    assert_eq!(s, 204, "{body}");
    let (s, got) = get(&t, &u.download, &[(SSE_KEY, &u.key)]).await;
    assert_eq!((s, got.as_slice()), (200, b"relayed".as_slice()));
}

#[tokio::test]
async fn a_bad_s3_base_is_refused_at_start() {
    for bad in ["ftp://x", "http://", "127.0.0.1:9", "http://h/path"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            cloudshell_emulator::EmulatorConfig::new(dir.path()).with_credentials(creds());
        config.s3_base = Some(bad.into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = cloudshell_emulator::Emulator::start(config, listener)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("s3_base"), "{bad}: {e}");
    }
}
