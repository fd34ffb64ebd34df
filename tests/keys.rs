//! Public-key tokens (RS256, ES256), algorithm confusion, and the `wsgate token` subcommand.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use wsgate::config::JwtAlgorithm;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn claims(sub: &str) -> serde_json::Value {
    json!({"sub": sub, "exp": jsonwebtoken::get_current_timestamp() + 600})
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

async fn refused_code(server: &TestServer, token: &str) -> (u16, String) {
    let r = Client::connect(&server.url(&format!("token={token}")), Fmt::Json)
        .await
        .err()
        .unwrap();
    (
        r.status,
        r.body["error"]["code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn rs256_tokens_are_accepted_and_confused_algorithms_refused() {
    let server = start_server(|c| {
        c.jwt_secret = None;
        c.jwt_public_key_file = Some(format!("{FIXTURES}/rs256-public.pem").into());
        c.jwt_algorithm = Some(JwtAlgorithm::Rs256);
    });
    let key = EncodingKey::from_rsa_pem(&pem("rs256-private.pem")).unwrap();
    let good = encode(&Header::new(Algorithm::RS256), &claims("rita"), &key).unwrap();
    let mut c = Client::connect(&server.url(&format!("token={good}")), Fmt::Json)
        .await
        .unwrap();
    assert_eq!(c.recv().await["user"], "rita");

    // Algorithm confusion: an HS256 token whose HMAC key is the server's public key PEM.
    let public = pem("rs256-public.pem");
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("eve"),
        &EncodingKey::from_secret(&public),
    )
    .unwrap();
    assert_eq!(
        refused_code(&server, &confused).await,
        (401, "auth.invalid".into())
    );
    // RS384 with the right key is still another algorithm.
    let rs384 = encode(&Header::new(Algorithm::RS384), &claims("eve"), &key).unwrap();
    assert_eq!(
        refused_code(&server, &rs384).await,
        (401, "auth.invalid".into())
    );
    server.handle.shutdown().await;
}

#[tokio::test]
async fn es256_tokens_are_accepted() {
    let server = start_server(|c| {
        c.jwt_secret = None;
        c.jwt_public_key_file = Some(format!("{FIXTURES}/es256-public.pem").into());
        c.jwt_algorithm = Some(JwtAlgorithm::Es256);
    });
    let key = EncodingKey::from_ec_pem(&pem("es256-private.pem")).unwrap();
    let good = encode(&Header::new(Algorithm::ES256), &claims("erik"), &key).unwrap();
    let url = server.url(&format!("token={good}&format=msgpack"));
    let mut c = Client::connect(&url, Fmt::MsgPack).await.unwrap();
    assert_eq!(c.recv().await["user"], "erik");
    server.handle.shutdown().await;
}

#[test]
fn a_wrong_key_file_stops_the_server_from_starting() {
    let mut config = wsgate::Config::for_tests();
    config.jwt_public_key_file = Some(format!("{FIXTURES}/missing.pem").into());
    assert!(wsgate::start(config).is_err());
    let mut config = wsgate::Config::for_tests();
    config.jwt_public_key_file = Some(format!("{FIXTURES}/rs256-public.pem").into());
    config.jwt_algorithm = Some(JwtAlgorithm::Es256);
    assert!(matches!(
        wsgate::start(config),
        Err(wsgate::StartError::Key(_))
    ));
}

#[tokio::test]
async fn the_token_subcommand_mints_tokens_the_server_accepts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["token", "--sub", "tess", "--exp", "5m", "--sid", "s-1"])
        .env("JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let server = start_server(|_| {});
    let mut c = Client::connect(&server.url(&format!("token={}", token.trim())), Fmt::Json)
        .await
        .unwrap();
    let w = c.recv().await;
    assert_eq!(
        (w["user"].as_str(), w["session"].as_str()),
        (Some("tess"), Some("s-1"))
    );
    // Without a secret it refuses, saying why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["token", "--sub", "tess"])
        .env_remove("JWT_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("JWT_SECRET"));
    server.handle.shutdown().await;
}
