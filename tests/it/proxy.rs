//! The data channel through an HTTP proxy (`SessionOptions::proxy`).

use base64::Engine as _;
use cloudshell_emulator::gateway::SessionOptions as GwOptions;
use cloudshell_rs::error_chain as chain;
use cloudshell_rs::session::{Proxy, Session, SessionOptions};

use crate::session_support::*;
use crate::support::connect_proxy::{Connect, Policy, TestProxy};

fn through(proxy: Proxy) -> SessionOptions {
    SessionOptions {
        proxy,
        ..local_options()
    }
}

/// `echo`s a marker in a new tab's shell and waits for it.
async fn echo_through(env: &Env, options: SessionOptions, marker: &str) {
    let mut s = Session::connect(env.create(&new_tab()).await, options)
        .await
        .unwrap();
    s.send_input(format!("echo {marker}-$((6*7))\r").as_bytes())
        .await
        .unwrap();
    read_until(&mut s, &format!("{marker}-42")).await;
    s.close().await.unwrap();
}

#[tokio::test]
async fn sessions_go_through_an_http_proxy_except_to_no_proxy_hosts() {
    let env = start().await;
    let proxy = TestProxy::start(Policy::Open).await;
    let emulator = format!("127.0.0.1:{}", env.emulator.local_addr().port());
    within(60, async {
        echo_through(
            &env,
            through(Proxy::url(&proxy.url(), "").unwrap()),
            "proxied",
        )
        .await;
        assert_eq!(
            proxy.connects(),
            [Connect {
                target: emulator.clone(),
                auth: None
            }]
        );
        // A host in the proxy's NO_PROXY list is dialed directly.
        let direct = Proxy::url(&proxy.url(), "localhost,127.0.0.0/8").unwrap();
        echo_through(&env, through(direct), "direct").await;
        echo_through(&env, through(Proxy::none()), "none").await;
        assert_eq!(proxy.targets(), [emulator]);
    })
    .await;
}

#[tokio::test]
async fn a_cut_websocket_is_dialed_again_through_the_proxy() {
    let env = start().await;
    let proxy = TestProxy::start(Policy::Open).await;
    within(60, async {
        let target = env.create(&new_tab()).await;
        env.emulator.gateway().configure_session(
            target.session_id.clone(),
            GwOptions::default().with_faults("cut:input:2".parse().unwrap()),
        );
        let options = through(Proxy::url(&proxy.url(), "").unwrap());
        let mut s = Session::connect(target, options).await.unwrap();
        for i in 0..4 {
            s.send_input(format!("echo line{i}-$((40+{i}))\r").as_bytes())
                .await
                .unwrap();
            read_until(&mut s, &format!("line{i}-{}", 40 + i)).await;
        }
        assert_eq!(total_cuts(&env.emulator), 1);
        let targets = proxy.targets();
        assert_eq!(targets.len(), 2, "{targets:?}");
        assert_eq!(targets[0], targets[1]);
    })
    .await;
}

#[tokio::test]
async fn proxy_credentials_are_sent_and_a_refusal_is_clear_without_them() {
    let env = start().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:p@ss w0rd")
    );
    let proxy = TestProxy::start(Policy::Basic(basic.clone())).await;
    let with = |userinfo: &str| format!("http://{userinfo}@127.0.0.1:{}", proxy.port);
    within(60, async {
        // Percent-encoded in the URL, decoded for the header.
        let good = Proxy::url(&with("alice:p%40ss%20w0rd"), "").unwrap();
        echo_through(&env, through(good), "authorized").await;
        assert_eq!(proxy.connects()[0].auth.as_deref(), Some(basic.as_str()));

        let wrong = Proxy::url(&with("alice:wrong-secret"), "").unwrap();
        let e = Session::connect(env.create(&new_tab()).await, through(wrong))
            .await
            .unwrap_err();
        let shown = chain(&e);
        assert!(shown.contains("407"), "{shown}");
        assert!(shown.contains("refused the ones in its URL"), "{shown}");
        assert!(!shown.contains("wrong-secret"), "{shown}");
        assert!(!format!("{e:?}").contains("wrong-secret"));

        let none = Proxy::url(&proxy.url(), "").unwrap();
        let e = Session::connect(env.create(&new_tab()).await, through(none))
            .await
            .unwrap_err();
        let shown = chain(&e);
        assert!(shown.contains("http://user:password@host:port"), "{shown}");
        assert_eq!(proxy.connects().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_proxy_that_refuses_or_is_down_gives_a_clear_error() {
    let env = start().await;
    let proxy = TestProxy::start(Policy::Refuse).await;
    let emulator = format!("127.0.0.1:{}", env.emulator.local_addr().port());
    within(60, async {
        let refusing = Proxy::url(&proxy.url(), "").unwrap();
        let e = Session::connect(env.create(&new_tab()).await, through(refusing))
            .await
            .unwrap_err();
        let shown = chain(&e);
        assert!(
            shown.contains(&format!(
                "the proxy {} refused to open a tunnel to {emulator}",
                proxy.url()
            )),
            "{shown}"
        );

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let down = Proxy::url(&format!("http://127.0.0.1:{closed}"), "").unwrap();
        let e = Session::connect(env.create(&new_tab()).await, through(down))
            .await
            .unwrap_err();
        let shown = chain(&e);
        assert!(
            shown.contains(&format!(
                "cannot connect to the proxy http://127.0.0.1:{closed}"
            )),
            "{shown}"
        );
    })
    .await;
}
