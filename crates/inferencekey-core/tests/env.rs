//! Configuration precedence: explicit value > `INFERENCEKEY_*` variable > default.

// Setting environment variables is unsafe in edition 2024 because another thread may
// read them at the same time; this test binary holds a single test, so none does.
#![allow(unsafe_code)]

mod common;

use common::*;
use inferencekey_core::config::{ENV_API_KEY, ENV_BASE_URL, ENV_PROJECT, ENV_SDK_TOKEN};
use inferencekey_core::{DataClient, ErrorKind, ManagementClient};

fn set(k: &str, v: &str) {
    unsafe { std::env::set_var(k, v) }
}
fn unset(k: &str) {
    unsafe { std::env::remove_var(k) }
}

#[test]
fn precedence_explicit_then_env_then_default() {
    for k in [ENV_BASE_URL, ENV_PROJECT, ENV_SDK_TOKEN, ENV_API_KEY] {
        unset(k);
    }
    // Nothing set: the token is missing.
    let e = ManagementClient::from_env().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration);
    assert!(e.message().contains(ENV_SDK_TOKEN));

    set(ENV_SDK_TOKEN, &sdk_token());
    let m = ManagementClient::from_env().unwrap();
    assert_eq!(m.base_url(), "https://api.inferencekey.com");
    assert_eq!(m.project(), None);

    set(ENV_BASE_URL, "http://127.0.0.1:9/base//");
    set(ENV_PROJECT, "from-env");
    let m = ManagementClient::from_env().unwrap();
    assert_eq!(m.base_url(), "http://127.0.0.1:9/base");
    assert_eq!(m.project(), Some("from-env"));

    let m = ManagementClient::builder()
        .base_url("http://example.test/")
        .project("explicit")
        .build()
        .unwrap();
    assert_eq!(
        (m.base_url(), m.project()),
        ("http://example.test", Some("explicit"))
    );

    set(ENV_BASE_URL, "not a url");
    let e = ManagementClient::from_env().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Configuration);
    set(ENV_BASE_URL, "   ");
    assert_eq!(
        ManagementClient::from_env().unwrap().base_url(),
        "https://api.inferencekey.com"
    );

    // Data client: the project is required, the key may come per endpoint.
    unset(ENV_PROJECT);
    assert_eq!(
        DataClient::from_env().unwrap_err().kind(),
        ErrorKind::Configuration
    );
    set(ENV_PROJECT, "orbit");
    let d = DataClient::from_env().unwrap();
    assert_eq!(
        d.endpoint("w", None).unwrap_err().kind(),
        ErrorKind::Configuration
    );
    set(ENV_API_KEY, &live_key());
    let d = DataClient::from_env().unwrap();
    assert_eq!(d.endpoint("w", None).unwrap().project_slug(), "orbit");
    for k in [ENV_BASE_URL, ENV_PROJECT, ENV_SDK_TOKEN, ENV_API_KEY] {
        unset(k);
    }
}
