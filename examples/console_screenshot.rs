//! Helper of `scripts/console-screenshot` (not part of Seawall): puts a running `seawall demo`
//! under an incident's worth of load, then photographs its console with headless Chromium.
//!
//! The load, open-loop and bounded (rate x seconds requests per stream, 5 s timeout, at most
//! 500 in flight per stream), all through the demo's proxy with X-Forwarded-For (the demo trusts
//! loopback) so that clients have their own addresses:
//! - shoppers: `GET /` and a few `GET /static/app.js` (the origin has none: 404s);
//! - sign-ups from many addresses, plus three clients hammering the sign-up (one of them an IPv6
//!   host rotating through its /64): the route's `per-ip` limit names them;
//! - the registered launch `SUMMERSALE20` ramping up in steps (diverted to the ingestion sink);
//! - an unannounced campaign (`?ref=tiktok-viral`) arriving a third of the way in, above the
//!   `[unregistered]` limit, with two more unregistered tags at a trickle;
//! - the browser itself loads the shop page a few times: its unapproved tag is a CSP violation.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[path = "shared/loadgen.rs"]
mod loadgen;
#[path = "../tests/common/webdriver.rs"]
mod webdriver;

use loadgen::{Schedule, run_stream};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    proxy: String,
    #[arg(long, default_value = "127.0.0.1:9901")]
    admin: String,
    /// Seconds of load before the screenshot (the charts span 600).
    #[arg(long, default_value_t = 180)]
    seconds: u64,
    #[arg(long, default_value = "docs/console.png")]
    out: std::path::PathBuf,
    #[arg(long, default_value_t = 1440)]
    width: u32,
}

/// A pseudo-random number from a request index (the same run gives the same addresses).
fn mix(i: u64) -> u64 {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 31;
    x.wrapping_mul(0xBF58_476D_1CE4_E5B9) ^ (x >> 29)
}

struct Streams {
    handles: Vec<std::thread::JoinHandle<Vec<loadgen::Sample>>>,
}

impl Streams {
    /// `rate` requests a second from `after` seconds into the run until its end.
    fn add(
        &mut self,
        start: Instant,
        total_s: u64,
        after: u64,
        rate: f64,
        build: impl Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + 'static,
    ) {
        let secs = total_s.saturating_sub(after) as f64;
        let s = Schedule {
            start: start + Duration::from_secs(after),
            rate,
            count: (rate * secs) as u64,
            timeout: Duration::from_secs(5),
            inflight: Arc::new(AtomicUsize::new(0)),
            max_inflight: 500,
        };
        self.handles.push(run_stream(s, |_| 0, build));
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = Args::parse();
    let (chromium, chromedriver) = webdriver::browser_paths()
        .expect("chromium and chromedriver (apt-get install chromium chromium-driver)");
    let proxy = format!("http://{}", a.proxy);
    let admin = format!("http://{}", a.admin);
    // Load runs a little past the screenshot, so the page shows it live.
    let total = a.seconds + 15;
    let start = Instant::now() + Duration::from_millis(200);
    let mut st = Streams {
        handles: Vec::new(),
    };
    let signup = format!("{proxy}/api/v1/users/register");

    let p = proxy.clone();
    st.add(start, total, 0, 30.0, move |c, _| c.get(format!("{p}/")));
    let p = proxy.clone();
    st.add(start, total, 0, 2.0, move |c, _| {
        c.get(format!("{p}/static/app.js"))
    });
    // Ordinary sign-ups: a new address each time.
    let u = signup.clone();
    st.add(start, total, 0, 3.0, move |c, i| {
        let ip = format!(
            "10.{}.{}.{}",
            mix(i) % 20,
            mix(i + 7) % 250,
            mix(i + 9) % 250
        );
        c.post(&u)
            .header("x-forwarded-for", ip)
            .body("email=someone@example.com")
    });
    // Three clients hammering the sign-up.
    for (after, rate, who) in [
        (10, 3.0, "198.51.100.23"),
        (25, 2.0, "203.0.113.77"),
        (40, 1.0, "v6"),
    ] {
        let u = signup.clone();
        st.add(start, total, after, rate, move |c, i| {
            let ip = if who == "v6" {
                format!("2001:db8:beef:7::{:x}", mix(i) % 0xffff)
            } else {
                who.to_string()
            };
            c.post(&u)
                .header("x-forwarded-for", ip)
                .body("email=bot@example.com")
        });
    }
    // The registered launch ramps up in four steps.
    for step in 0..4u64 {
        let u = signup.clone();
        st.add(start, total, step * a.seconds / 5, 22.0, move |c, i| {
            let ip = format!("10.{}.{}.{}", 20 + step, mix(i) % 250, mix(i + 3) % 250);
            c.post(format!("{u}?ref=SUMMERSALE20"))
                .header("x-forwarded-for", ip)
                .body("email=a@example.com")
        });
    }
    // The unannounced campaign, above its limit (50 r/s, burst 100), and two trickles.
    for (after, rate, tag) in [
        (a.seconds / 3, 70.0, "tiktok-viral"),
        (20, 1.0, "spring-promo"),
        (50, 0.5, "newsletter-7"),
    ] {
        let u = signup.clone();
        st.add(start, total, after, rate, move |c, i| {
            let ip = format!("100.64.{}.{}", mix(i) % 250, mix(i + 1) % 250);
            c.post(format!("{u}?ref={tag}"))
                .header("x-forwarded-for", ip)
                .body("email=b@example.com")
        });
    }

    let work = tempfile::tempdir().expect("work dir");
    let driver =
        webdriver::Driver::start(&chromedriver, &work.path().join("chromedriver.log")).await;
    let session = driver
        .new_session(
            &chromium,
            &work.path().join("profile"),
            &[format!("--window-size={},1000", a.width)],
        )
        .await;
    // A shopper's browser: the shop page's unapproved tag is blocked and reported.
    for _ in 0..3 {
        session.goto(&driver, &format!("{proxy}/")).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    session.goto(&driver, &format!("{admin}/")).await;
    let shoot_at = start + Duration::from_secs(a.seconds);
    while Instant::now() < shoot_at {
        let left = shoot_at - Instant::now();
        eprintln!(
            "console-screenshot: {} s of load left before the screenshot",
            left.as_secs()
        );
        tokio::time::sleep(left.min(Duration::from_secs(30))).await;
    }
    // The whole page in one picture: grow the window until the viewport holds the document.
    let mut height = 1000u32;
    for _ in 0..4 {
        let v = session
            .execute(
                &driver,
                "return [document.documentElement.scrollHeight, window.innerHeight];",
                json!([]),
            )
            .await;
        let (doc, view) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
        if view >= doc {
            break;
        }
        height += (doc - view) as u32 + 8;
        session.set_window(&driver, a.width, height).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let png = session.screenshot(&driver).await;
    std::fs::write(&a.out, &png).expect("write the screenshot");
    let problems: Vec<_> = session
        .browser_log(&driver)
        .await
        .into_iter()
        .filter(|e| {
            e["level"] == "SEVERE" && !e["message"].as_str().unwrap_or("").contains(&a.proxy)
        })
        .collect();
    session.delete(&driver).await;
    drop(driver);
    let mut sent = 0;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for h in st.handles {
        for s in h.join().unwrap_or_default() {
            sent += 1;
            *by_status.entry(s.status).or_default() += 1;
        }
    }
    eprintln!(
        "console-screenshot: wrote {} ({} bytes); {sent} requests, by status {by_status:?}",
        a.out.display(),
        png.len()
    );
    if !problems.is_empty() {
        eprintln!("console-screenshot: the console logged errors: {problems:#?}");
        std::process::exit(1);
    }
}
