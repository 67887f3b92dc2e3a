//! Where ready runs wait and which threads take them: the ready queue, the worker pool
//! that owns it, and the monitor that grows pools. This layer knows runs only by index;
//! the engine plugs in through [`Host`].

mod monitor;
mod pool;
mod queue;

pub use monitor::after_fork_in_child;
pub(crate) use pool::{waiting, Host, Pool, WorkerStat};
