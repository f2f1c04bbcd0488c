//! Several Seawalls started and stopped one after another in one process all serve: the kit
//! relies on it, and Pingora's no-steal runtime breaks it (see `RunOptions::in_process`).

mod common;

use common::{Kit, TestUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_restart_in_one_process() {
    let app = TestUpstream::start("app").await;
    let body = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n",
        app.addr
    );
    for i in 0..4 {
        let sw = Kit::new().start(&body);
        assert_eq!(sw.get("/").await.status(), 200, "server number {i}");
        sw.stop();
    }
    assert_eq!(app.hits(), 4);
}
