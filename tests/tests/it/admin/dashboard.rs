//! The dashboard in a real browser (headless Chromium through chromium-driver): sign in with the
//! admin secret into an HTTP-only session cookie, watch a build appear, follow its log live to
//! the end, drain a worker, sign out.

use perry_hub_tests::{browser::Browser, sim, TestHub};
use serde_json::json;

use super::wait_free_slots;

#[tokio::test]
async fn an_operator_signs_in_follows_a_build_live_and_drains_a_worker() {
    let hub = TestHub::start().await;
    let browser = Browser::start().await;

    // Signed out, every page leads to the sign-in form; a wrong secret is refused there.
    browser.goto(&hub.url("/admin/workers")).await;
    assert!(
        browser.url().await.ends_with("/admin/login"),
        "{}",
        browser.url().await
    );
    let input = browser.wait_for("#secret").await;
    browser.type_into(&input, "not-the-admin-secret").await;
    browser.click_on("button[type=submit]").await;
    browser
        .wait_text(".error", |t| t.contains("not the admin secret"))
        .await;
    browser.keep_screenshot("login").await;

    let input = browser.wait_for("#secret").await;
    browser.type_into(&input, &hub.admin_secret()).await;
    browser.click_on("button[type=submit]").await;
    browser.wait_text("h1", |t| t == "Overview").await;
    let url = browser.url().await;
    assert!(
        url.ends_with("/admin") && !url.contains(&hub.admin_secret()),
        "{url}"
    );
    // The session cookie is HTTP-only and secure: page script cannot read it.
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "perry_admin")
        .expect("session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert!(!session["value"]
        .as_str()
        .unwrap()
        .contains(&hub.admin_secret()));
    assert_eq!(browser.eval("return document.cookie").await, json!(""));

    // A build appears in the list.
    let key = hub.registered_license().await;
    let job_id = hub.submit_linux_build(&key).await;
    browser.goto(&hub.url("/admin/builds")).await;
    browser
        .wait_text("table", |t| {
            t.contains(&job_id[..8]) && t.contains("queued")
        })
        .await;
    browser.keep_screenshot("builds").await;

    // Its page follows the log live while a worker builds it, to the end.
    browser
        .goto(&hub.url(&format!("/admin/builds/{job_id}")))
        .await;
    browser
        .wait_text("#live", |t| t.eq_ignore_ascii_case("live"))
        .await;
    let mut worker = hub.worker("linux-ui", &["linux"], 2).await;
    let assign = worker.assignment().await;
    browser
        .wait_text("#log", |t| t.contains("Assigned to a build worker"))
        .await;
    for line in [
        "Installing dependencies",
        "Compiling src/main.ts",
        "Linking app",
    ] {
        worker.send(json!({"type":"log","job_id":job_id,"stage":"compiling","line":line,"stream":"stdout"})).await;
    }
    browser
        .wait_text("#log", |t| {
            t.contains("Compiling src/main.ts") && t.contains("Linking app")
        })
        .await;
    browser.keep_screenshot("build-live").await;
    let complete = sim::run_assigned_build(&hub, &assign, b"linux-artifact").await;
    worker.send(complete).await;
    browser
        .wait_text("#log", |t| t.contains("build succeeded"))
        .await;
    // The page reloads once the build ended: state and artifact from the database.
    browser.wait_text("#fact-state", |t| t == "completed").await;
    browser
        .wait_text("#artifacts", |t| t.contains("app-linux.tar.gz"))
        .await;
    browser.keep_screenshot("build-done").await;
    // The reloaded page replays the ended build and stays: no reload loop.
    browser.eval("window.stayed = true; return null").await;
    browser
        .wait_text("#live", |t| t.eq_ignore_ascii_case("completed"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        browser.eval("return window.stayed === true").await,
        json!(true)
    );

    // The overview counts it.
    browser.goto(&hub.url("/admin")).await;
    browser
        .wait_text("#tile-builds-hour", |t| t.contains('1'))
        .await;
    browser.keep_screenshot("overview").await;

    // Drain the worker from its page: the dispatcher stops giving it jobs.
    browser.goto(&hub.url("/admin/workers")).await;
    browser
        .wait_text("table", |t| t.contains("linux-ui") && t.contains("ready"))
        .await;
    browser
        .click_on("form[action='/admin/workers/linux-ui/drain'] button")
        .await;
    browser.wait_text("table", |t| t.contains("draining")).await;
    browser
        .wait_for("form[action='/admin/workers/linux-ui/undrain'] button")
        .await;
    wait_free_slots(&hub, "linux", 0).await;
    browser.keep_screenshot("workers").await;

    // A forged form from elsewhere (no session, no token) changes nothing.
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = no_redirects
        .post(hub.url("/admin/workers/linux-ui/undrain"))
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    let (_, listed) = super::admin_get(&hub, "/api/v1/admin/workers").await;
    assert_eq!(listed["drained"], json!(["linux-ui"]));

    // Signing out ends the session.
    browser.click_on("header .logout button").await;
    browser.wait_for("#secret").await;
    browser.goto(&hub.url("/admin")).await;
    assert!(browser.url().await.ends_with("/admin/login"));
    drop(browser);
    hub.stop().await;
}

#[tokio::test]
async fn dashboard_pages_and_actions_need_a_session() {
    let hub = TestHub::start().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/admin",
        "/admin/builds",
        "/admin/workers",
        "/admin/builds/x",
    ] {
        let resp = client.get(hub.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 303, "{path}");
        assert_eq!(resp.headers()["location"], "/admin/login", "{path}");
    }
    let admin = hub.admin_auth();
    // The API's Bearer secret is not a dashboard session.
    let resp = client
        .get(hub.url("/admin"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let forged = client
        .get(hub.url("/admin"))
        .header("cookie", "perry_admin=v1.99999999999999.00")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303);
    let resp = client
        .post(hub.url("/admin/workers/w/drain"))
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let drains: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM worker_drains")
        .fetch_one(hub.pool())
        .await
        .unwrap();
    assert_eq!(drains, 0);
    // Signing in sets the cookie and never echoes the secret.
    let resp = client
        .post(hub.url("/admin/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("secret={}", hub.admin_secret()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("Secure")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains(&hub.admin_secret()));
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(hub.url("/admin/workers"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let body = page.text().await.unwrap();
    assert!(body.contains("<h1>Workers</h1>") && !body.contains(&hub.admin_secret()));
    // With the session but without the form token, an action is refused.
    let resp = client
        .post(hub.url("/admin/workers/w/drain"))
        .header("cookie", &session)
        .body("csrf=wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let drains: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM worker_drains")
        .fetch_one(hub.pool())
        .await
        .unwrap();
    assert_eq!(drains, 0);
    hub.stop().await;
}
