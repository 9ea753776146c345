//! The one bridge from the blocking [`Store`](crate::store::Store) trait to async SDKs: a
//! process-wide runtime of its own, entered from whatever thread calls (a scoped helper thread
//! when the caller is itself inside a runtime, where `block_on` would panic).

use std::future::Future;
use std::sync::OnceLock;

pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-io")
            .enable_all()
            .build()
            .expect("starting the store I/O runtime")
    })
}

/// Runs a future to completion on the store runtime from any thread.
pub fn block<F: Future + Send>(f: F) -> F::Output
where
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| runtime().block_on(f))
                .join()
                .expect("store helper thread")
        })
    } else {
        runtime().block_on(f)
    }
}
