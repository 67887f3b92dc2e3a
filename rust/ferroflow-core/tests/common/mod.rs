//! A test executor for closures, and helpers shared by the integration tests.
//!
//! A run's payload is a [`Task`]: its upstream deps (so the body can read their values)
//! and an [`Action`]. A run's value is `Result<i64, String>`. The executor honours
//! [`Job::disposition`], and records every execution (run, attempt, thread, whether its
//! upstreams were final, the state it ran in, what it saw) and every end (run, final
//! state), in order, so tests can check the engine's invariants afterwards. It also
//! counts the runs in flight (executing in a batch, or deferred to a thread of their own
//! and not yet ended) and the most at once, for the bound `max_workers` sets.

#![allow(dead_code)]

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use ferroflow_core::{Batch, Dep, Disposition, Engine, Executor, Final, RunId, RunState, Shared};
use parking_lot::Mutex;

pub type Value = Result<i64, String>;
pub type Eng = Arc<Shared<TestExec>>;

/// How long any test may take before it is declared deadlocked.
pub const DEADLOCK: Duration = Duration::from_secs(20);

/// What the body of a run does.
pub enum Action {
    /// Completes with `base` plus the sum of its upstreams' `Ok` values.
    Sum(i64),
    /// Fails.
    Fail,
    /// Fails its first `failures` attempts, each retried after `delay` while fewer than
    /// `retries` retries were used; then behaves as `Sum(base)`.
    Flaky {
        failures: u32,
        retries: u32,
        delay: Duration,
        base: i64,
    },
    /// Panics inside the executor.
    Panic,
    /// Anything else: sleep, block on a channel, submit and wait on the same engine, ...
    Call(Box<dyn FnOnce(&Ctx<'_>) -> Value + Send>),
    /// A coroutine run: the batch defers it (`Batch::defer`) and a thread of its own (its
    /// "event loop") runs the body and ends it with `Shared::finish_claimed`.
    Defer(Box<dyn FnOnce(&Ctx<'_>) -> Value + Send>),
}

/// What a [`Action::Call`] body sees.
pub struct Ctx<'a> {
    pub engine: &'a Eng,
    pub run: RunId,
    pub attempt: u32,
    /// The values of its upstreams, in dep order.
    pub upstream: Vec<Value>,
}

pub struct Task {
    pub deps: Vec<Dep>,
    pub action: Action,
}

impl Task {
    pub fn sum(base: i64) -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Sum(base),
        }
    }
    pub fn fail() -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Fail,
        }
    }
    pub fn flaky(failures: u32, retries: u32, delay: Duration, base: i64) -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Flaky {
                failures,
                retries,
                delay,
                base,
            },
        }
    }
    pub fn panic() -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Panic,
        }
    }
    pub fn call(body: impl FnOnce(&Ctx<'_>) -> Value + Send + 'static) -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Call(Box::new(body)),
        }
    }
    pub fn defer(body: impl FnOnce(&Ctx<'_>) -> Value + Send + 'static) -> Task {
        Task {
            deps: Vec::new(),
            action: Action::Defer(Box::new(body)),
        }
    }
    /// A deferred run that sleeps `ms` on its own thread, then completes with `value`.
    pub fn deferred_sleep(ms: u64, value: i64) -> Task {
        Task::defer(move |_| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(value)
        })
    }
    pub fn sleep(ms: u64, value: i64) -> Task {
        Task::call(move |_| {
            std::thread::sleep(Duration::from_millis(ms));
            Ok(value)
        })
    }
    /// Waits on `runs` (ordinary edges).
    pub fn after(mut self, runs: &[RunId]) -> Task {
        self.deps.extend(runs.iter().map(|&run| Dep {
            run,
            allow_failure: false,
        }));
        self
    }
    /// Waits on `runs` but starts even if they do not complete.
    pub fn after_allowing_failure(mut self, runs: &[RunId]) -> Task {
        self.deps.extend(runs.iter().map(|&run| Dep {
            run,
            allow_failure: true,
        }));
        self
    }
}

/// A task that reports when it starts and then blocks until the gate is opened (or dropped).
pub struct Gate {
    started: Receiver<RunId>,
    release: Option<Sender<()>>,
}

impl Gate {
    pub fn new(value: i64) -> (Gate, Task) {
        let (started_tx, started) = channel();
        let (release, release_rx) = channel::<()>();
        let task = Task::call(move |ctx| {
            let _ = started_tx.send(ctx.run);
            let _ = release_rx.recv();
            Ok(value)
        });
        (
            Gate {
                started,
                release: Some(release),
            },
            task,
        )
    }
    pub fn wait_started(&self) -> RunId {
        self.started.recv_timeout(DEADLOCK).expect("gated task never started")
    }
    pub fn has_started(&self) -> bool {
        self.started.try_recv().is_ok()
    }
    pub fn open(&mut self) {
        self.release.take();
    }
}

/// One execution of a run's body.
#[derive(Clone, Debug)]
pub struct Exec {
    pub run: RunId,
    pub attempt: u32,
    pub thread: ThreadId,
    /// The run's state as its body began (Running, or Retrying for attempt > 0).
    pub state: Option<RunState>,
    /// Whether every upstream was final (with an outcome) as the body began.
    pub upstreams_final: bool,
    pub upstream: Vec<Value>,
    pub at: Instant,
    /// For an attempt sent back with `Batch::retry`: the run's state right after.
    pub state_after_retry: Option<RunState>,
}

/// An append-only record in fixed-size chunks: appending never copies what is already
/// there, so recording stays cheap (a long copy under the lock would make every worker
/// look stalled to the pool, and grow it).
pub struct Log<T>(Mutex<Vec<Vec<T>>>);

impl<T: Clone> Log<T> {
    const CHUNK: usize = 4096;

    fn push(&self, item: T) {
        let mut chunks = self.0.lock();
        if chunks.last().is_none_or(|chunk| chunk.len() == Self::CHUNK) {
            chunks.push(Vec::with_capacity(Self::CHUNK));
        }
        chunks.last_mut().expect("just ensured").push(item);
    }

    fn with<R>(&self, f: impl FnOnce(&mut dyn Iterator<Item = &mut T>) -> R) -> R {
        let mut chunks = self.0.lock();
        f(&mut chunks.iter_mut().flatten())
    }

    fn all(&self) -> Vec<T> {
        self.with(|items| items.map(|item| item.clone()).collect())
    }
}

impl<T> Default for Log<T> {
    fn default() -> Self {
        Log(Mutex::new(Vec::new()))
    }
}

/// How many runs execute (in a batch, or deferred and not yet ended) at once, and the most so far.
#[derive(Default)]
pub struct Flight {
    now: AtomicUsize,
    peak: AtomicUsize,
}

impl Flight {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
pub struct TestExec {
    execs: Log<Exec>,
    ends: Log<(RunId, Final)>,
    flight: Flight,
}

impl TestExec {
    /// The most runs that were executing (or deferred and not yet ended) at once.
    pub fn peak_in_flight(&self) -> usize {
        self.flight.peak.load(Ordering::SeqCst)
    }
    /// Runs executing (or deferred and not yet ended) now.
    pub fn in_flight(&self) -> usize {
        self.flight.now.load(Ordering::SeqCst)
    }
    /// Every execution, in the order they began.
    pub fn execs(&self) -> Vec<Exec> {
        self.execs.all()
    }
    pub fn execs_of(&self, run: RunId) -> Vec<Exec> {
        self.execs
            .with(|all| all.filter(|e| e.run == run).map(|e| e.clone()).collect())
    }
    pub fn exec_count(&self, run: RunId) -> usize {
        self.execs.with(|all| all.filter(|e| e.run == run).count())
    }
    /// The runs executed, in the order they began.
    pub fn order(&self) -> Vec<RunId> {
        self.execs.with(|all| all.map(|e| e.run).collect())
    }
    /// Every end reported through the executor (`finish` or `abandoned`), in order.
    pub fn ends(&self) -> Vec<(RunId, Final)> {
        self.ends.all()
    }
    pub fn ends_of(&self, run: RunId) -> Vec<Final> {
        self.ends
            .with(|all| all.filter(|(r, _)| *r == run).map(|(_, f)| *f).collect())
    }

    fn begin(&self, engine: &Eng, run: RunId, attempt: u32, deps: &[Dep]) -> Vec<Value> {
        let upstreams_final = deps
            .iter()
            .all(|d| engine.state(d.run).is_some_and(RunState::is_final) && engine.outcome(d.run).is_some());
        let upstream: Vec<Value> = deps
            .iter()
            .map(|d| {
                engine
                    .outcome(d.run)
                    .map_or_else(|| Err("upstream has no outcome".to_string()), |o| o.value.clone())
            })
            .collect();
        self.execs.push(Exec {
            run,
            attempt,
            thread: std::thread::current().id(),
            state: engine.state(run),
            upstreams_final,
            upstream: upstream.clone(),
            at: Instant::now(),
            state_after_retry: None,
        });
        upstream
    }
}

#[allow(clippy::unnecessary_wraps)] // a run's value, which is a Result
fn sum(base: i64, upstream: &[Value]) -> Value {
    Ok(base + upstream.iter().filter_map(|v| v.as_ref().ok()).sum::<i64>())
}

impl Executor for TestExec {
    type Payload = Task;
    type Value = Value;

    fn run_batch(&self, batch: &mut Batch<'_, Self>) {
        while let Some(job) = batch.next_job() {
            let run = job.run;
            let (state, value) = match job.disposition {
                Disposition::NotReady { upstream } => (Final::NotReady, Err(format!("not ready: upstream {upstream}"))),
                Disposition::Cancel => (Final::Cancelled, Err("cancelled".to_string())),
                Disposition::Run => {
                    let engine = Arc::clone(batch.engine());
                    let upstream = self.begin(&engine, run, job.attempt, &job.payload.deps);
                    if let Action::Flaky {
                        failures,
                        retries,
                        delay,
                        ..
                    } = job.payload.action
                    {
                        if job.attempt < failures && job.attempt < retries {
                            let attempt = job.attempt;
                            batch.retry(job, delay);
                            let after = engine.state(run);
                            self.execs.with(|all| {
                                let last = all
                                    .filter(|e| e.run == run && e.attempt == attempt)
                                    .last()
                                    .expect("just recorded");
                                last.state_after_retry = after;
                            });
                            continue;
                        }
                    }
                    let attempt = job.attempt;
                    if matches!(job.payload.action, Action::Defer(_)) {
                        self.flight.enter();
                        let mut job = batch.defer(job);
                        let Action::Defer(body) = std::mem::replace(&mut job.payload.action, Action::Fail) else {
                            unreachable!("checked above");
                        };
                        std::thread::Builder::new()
                            .name("test-event-loop".into())
                            .spawn(move || {
                                let value = body(&Ctx {
                                    engine: &engine,
                                    run: job.run,
                                    attempt,
                                    upstream,
                                });
                                let state = if value.is_ok() { Final::Completed } else { Final::Failed };
                                let exec = engine.executor();
                                exec.flight.leave();
                                exec.ends.push((job.run, state));
                                engine.finish_claimed(job.run, state, value);
                            })
                            .expect("spawn a deferred run's thread");
                        continue;
                    }
                    self.flight.enter();
                    let value = match job.payload.action {
                        Action::Sum(base) => sum(base, &upstream),
                        Action::Fail => Err(format!("run {run} failed")),
                        Action::Flaky { failures, base, .. } if attempt >= failures => sum(base, &upstream),
                        Action::Flaky { .. } => Err(format!("run {run} failed attempt {attempt}")),
                        Action::Panic => {
                            self.flight.leave();
                            panic!("run {run} panics on purpose")
                        }
                        Action::Call(body) => body(&Ctx {
                            engine: &engine,
                            run,
                            attempt,
                            upstream,
                        }),
                        Action::Defer(_) => unreachable!("deferred above"),
                    };
                    self.flight.leave();
                    (if value.is_ok() { Final::Completed } else { Final::Failed }, value)
                }
            };
            // Recorded before `finish`, so whoever sees the run final also sees this.
            self.ends.push((run, state));
            batch.finish(run, state, value);
        }
    }

    fn abandoned(&self, run: RunId) -> Value {
        self.ends.push((run, Final::Crashed));
        Err(format!("run {run} crashed"))
    }
}

pub fn engine(max_workers: usize) -> Engine<TestExec> {
    Engine::new(TestExec::default(), max_workers)
}

pub fn submit(engine: &Eng, task: Task) -> RunId {
    let deps = task.deps.clone();
    engine.submit(task, &deps).expect("submit")
}

pub fn submit_many(engine: &Eng, tasks: Vec<Task>) -> Range<RunId> {
    engine
        .submit_many(
            tasks
                .into_iter()
                .map(|task| {
                    let deps = task.deps.clone();
                    (task, deps.into())
                })
                .collect(),
        )
        .expect("submit_many")
}

/// A direct call: registered inline, then waited for (with help) on this thread, which
/// executes it once its upstreams are final.
pub fn call(engine: &Eng, task: Task) -> RunId {
    let deps = task.deps.clone();
    let run = engine.submit_inline(task, &deps).expect("submit_inline");
    assert_eq!(engine.wait(run, None, true), Ok(true));
    run
}

pub fn final_of(engine: &Eng, run: RunId) -> Final {
    engine
        .outcome(run)
        .unwrap_or_else(|| panic!("run {run} has no outcome (state {:?})", engine.state(run)))
        .state
}

pub fn value_of(engine: &Eng, run: RunId) -> Value {
    engine
        .outcome(run)
        .unwrap_or_else(|| panic!("run {run} has no outcome (state {:?})", engine.state(run)))
        .value
        .clone()
}

#[allow(clippy::unnecessary_wraps)] // the deadline argument the waits take
pub fn deadline(ms: u64) -> Option<Instant> {
    Some(Instant::now() + Duration::from_millis(ms))
}

/// The invariants every finished engine must satisfy: each run is final with an outcome
/// whose state its state matches, ended through the executor exactly once with that
/// state, and every execution began after all of the run's upstreams were final.
pub fn check_invariants(engine: &Eng) {
    let exec = engine.executor();
    let mut ends: Vec<Vec<Final>> = vec![Vec::new(); engine.len() as usize];
    for (run, state) in exec.ends() {
        ends[run as usize].push(state);
    }
    for run in 0..engine.len() {
        let state = engine.state(run).expect("registered");
        assert!(state.is_final(), "run {run} is {state:?}, not final");
        let outcome = engine.outcome(run).expect("final run has an outcome");
        assert_eq!(outcome.state.state(), state, "run {run}: outcome and state disagree");
        assert_eq!(
            ends[run as usize],
            vec![outcome.state],
            "run {run} must end through the executor exactly once"
        );
    }
    for e in exec.execs() {
        assert!(
            e.upstreams_final,
            "run {} (attempt {}) began before its upstreams were final",
            e.run, e.attempt
        );
    }
    // A waiter sees a run final as soon as it is recorded; it stops counting as unfinished
    // when its batch publishes it (and its callbacks have run), a moment later.
    assert!(
        engine.wait_idle(deadline(5_000), false),
        "{} runs still unfinished",
        engine.unfinished()
    );
}

/// Tests that measure timing or the pool's size, and tests that keep CPUs busy, run
/// [`exclusively`]; every other test runs [`within`], and the two never overlap. (The
/// pool judges a worker stalled by wall-clock time, and on a saturated box a preempted
/// worker running trivial runs looks stalled, so concurrent tests would skew it.)
static SCHEDULE: parking_lot::RwLock<()> = parking_lot::RwLock::new(());

/// Runs `body` on its own thread and fails (instead of hanging) if it takes longer than
/// [`DEADLOCK`]. Panics inside `body` are re-raised here.
pub fn within<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let _shared = SCHEDULE.read();
    within_for(DEADLOCK, body)
}

/// [`within`], with no other test running meanwhile.
pub fn exclusively<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let _alone = SCHEDULE.write();
    within_for(DEADLOCK, body)
}

pub fn within_for<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    let handle = std::thread::Builder::new()
        .name("test-body".into())
        .spawn(move || {
            let _ = tx.send(body());
        })
        .expect("spawn test body");
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the body neither returned nor panicked"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("deadlock: the test did not finish within {limit:?}"),
    }
}
