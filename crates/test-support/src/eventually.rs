use std::fmt::Debug;
use std::time::{Duration, Instant};

/// Polls `check` until it returns `Ok`, or panics with its last error once `deadline` has passed.
/// Prefer the `eventually!` macro, which names the checked expression in the panic.
pub fn poll_until<T, E: Debug>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    let mut pause = Duration::from_millis(10);
    loop {
        match check() {
            Ok(value) => return value,
            Err(e) if start.elapsed() >= deadline => {
                panic!("{what} did not hold within {deadline:?}; last error: {e:?}")
            }
            Err(_) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// `eventually!(deadline, || check())`: waits until the closure returns `Ok(value)` and yields the
/// value; panics with the last error after `deadline`.
#[macro_export]
macro_rules! eventually {
    ($deadline:expr, $check:expr) => {
        $crate::poll_until($deadline, stringify!($check), $check)
    };
}
