//! The health server of the long-running binaries (`cstor_api::health`): `/healthz` answers
//! while the server runs, `/readyz` follows the handle the binary flips, and the server lets go
//! of its port when its shutdown future completes.

use std::{net::SocketAddr, time::Duration};

use cstor_api::health::{self, Health, HealthAddr};
use cstor_testkit::{http_get::get, wait_until};

const ANSWER: Duration = Duration::from_secs(5);

async fn start(health: &Health) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let addr: HealthAddr = "127.0.0.1:0".parse().unwrap();
    let bound = health::start(addr, health.clone(), async {
        let _ = stopped.await;
    })
    .await
    .expect("binds")
    .expect("enabled");
    (bound, stop)
}

#[tokio::test]
async fn healthz_readyz_and_shutdown() {
    let health = Health::new("waiting for\nthe thing");
    let (addr, stop) = start(&health).await;

    assert_eq!(
        get(addr, "/healthz", ANSWER).await.unwrap(),
        (200, "ok".to_owned())
    );
    // Not ready: 503 and the reason on one line.
    assert_eq!(
        get(addr, "/readyz", ANSWER).await.unwrap(),
        (503, "waiting for the thing".to_owned())
    );
    health.set_ready();
    assert_eq!(
        get(addr, "/readyz", ANSWER).await.unwrap(),
        (200, "ok".to_owned())
    );
    health.set_not_ready("lost it");
    assert_eq!(
        get(addr, "/readyz", ANSWER).await.unwrap(),
        (503, "lost it".to_owned())
    );
    assert_eq!(get(addr, "/other", ANSWER).await.unwrap().0, 404);

    stop.send(()).unwrap();
    wait_until("the health server to close its port", ANSWER, || async {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await
    .expect("the port is closed after shutdown");
}

#[tokio::test]
async fn a_silent_client_does_not_keep_the_server_from_answering() {
    let health = Health::new("starting");
    health.set_ready();
    let (addr, _stop) = start(&health).await;
    // More idle connections than the server serves at once: each is dropped after the
    // connection timeout, so the server answers again afterwards.
    let mut idle = Vec::new();
    for _ in 0..health::MAX_CONNECTIONS + 2 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let answer = get(addr, "/readyz", health::CONNECTION_TIMEOUT * 3)
        .await
        .unwrap();
    assert_eq!(answer, (200, "ok".to_owned()));
}

#[tokio::test]
async fn disabled_starts_nothing() {
    let addr: HealthAddr = "".parse().unwrap();
    assert_eq!(
        health::start(addr, Health::new("x"), std::future::pending()).await,
        Ok(None)
    );
}

#[tokio::test]
async fn a_taken_port_is_an_error_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = HealthAddr::from(taken.local_addr().unwrap());
    let err = health::start(addr, Health::new("x"), std::future::pending())
        .await
        .unwrap_err();
    assert!(err.contains("--health-addr"), "{err}");
}
