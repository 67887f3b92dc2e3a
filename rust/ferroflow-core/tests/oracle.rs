//! Random DAGs run by the engine against a sequential oracle in plain Rust.

mod common;

use std::time::Duration;

use common::*;
use ferroflow_core::{Final, RunId};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Behaviour {
    Succeed,
    Fail,
    /// Fails `failures` times, with `retries` retries allowed.
    Flaky {
        failures: u32,
        retries: u32,
    },
}

#[derive(Clone, Debug)]
struct Node {
    /// (upstream index, allow_failure), upstreams distinct and earlier.
    deps: Vec<(usize, bool)>,
    behaviour: Behaviour,
    /// Start a new submission piece at this node (if allowed).
    cut: bool,
    /// Submit this node's piece one run at a time with `submit` rather than `submit_many`.
    single: bool,
}

#[derive(Clone, Debug)]
struct Case {
    nodes: Vec<Node>,
    workers: usize,
}

fn behaviour() -> impl Strategy<Value = Behaviour> {
    prop_oneof![
        6 => Just(Behaviour::Succeed),
        2 => Just(Behaviour::Fail),
        2 => (1u32..=3, 0u32..=3).prop_map(|(failures, retries)| Behaviour::Flaky { failures, retries }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=60, 0usize..=4).prop_flat_map(|(n, workers)| {
        let nodes: Vec<_> = (0..n)
            .map(|i| {
                let deps = if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::vec((0..i, prop::bool::weighted(0.25)), 0..=3).boxed()
                };
                (deps, behaviour(), prop::bool::weighted(0.3), any::<bool>()).prop_map(
                    |(mut deps, behaviour, cut, single)| {
                        deps.sort_unstable();
                        deps.dedup_by_key(|d| d.0);
                        Node {
                            deps,
                            behaviour,
                            cut,
                            single,
                        }
                    },
                )
            })
            .collect();
        nodes.prop_map(move |nodes| Case { nodes, workers })
    })
}

/// What the engine must end with, computed in plain Rust in topological (index) order.
fn oracle(nodes: &[Node]) -> Vec<(Final, Option<i64>, usize)> {
    let mut out: Vec<(Final, Option<i64>, usize)> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let blocked = node
            .deps
            .iter()
            .any(|&(up, allow)| !allow && out[up].0 != Final::Completed);
        if blocked {
            out.push((Final::NotReady, None, 0));
            continue;
        }
        let value = 1 + node.deps.iter().filter_map(|&(up, _)| out[up].1).sum::<i64>();
        out.push(match node.behaviour {
            Behaviour::Succeed => (Final::Completed, Some(value), 1),
            Behaviour::Fail => (Final::Failed, None, 1),
            Behaviour::Flaky { failures, retries } if failures <= retries => {
                (Final::Completed, Some(value), failures as usize + 1)
            }
            Behaviour::Flaky { retries, .. } => (Final::Failed, None, retries as usize + 1),
        });
    }
    out
}

fn task(node: &Node) -> Task {
    let mut task = match node.behaviour {
        Behaviour::Succeed => Task::sum(1),
        Behaviour::Fail => Task::fail(),
        Behaviour::Flaky { failures, retries } => Task::flaky(failures, retries, Duration::from_micros(200), 1),
    };
    for &(up, allow) in &node.deps {
        let up = [up as RunId];
        task = if allow {
            task.after_allowing_failure(&up)
        } else {
            task.after(&up)
        };
    }
    task
}

fn run_case(case: &Case) -> Result<(), TestCaseError> {
    let expected = oracle(&case.nodes);
    let engine = engine(case.workers);
    let e = engine.shared();

    // Cut into pieces; a piece may not contain a dependency on itself (a run can only
    // depend on runs registered before its own submit call).
    let mut start = 0;
    while start < case.nodes.len() {
        let mut end = start + 1;
        while end < case.nodes.len() && !case.nodes[end].cut && case.nodes[end].deps.iter().all(|&(up, _)| up < start) {
            end += 1;
        }
        if case.nodes[start].single {
            for node in &case.nodes[start..end] {
                submit(e, task(node));
            }
        } else {
            let range = submit_many(e, case.nodes[start..end].iter().map(task).collect());
            prop_assert_eq!(range, start as RunId..end as RunId);
        }
        start = end;
    }

    prop_assert!(
        e.wait_idle(deadline(20_000), true),
        "wait_idle timed out: {} unfinished",
        e.unfinished()
    );
    check_invariants(e);
    for (run, (state, value, execs)) in expected.iter().enumerate() {
        let run = run as RunId;
        prop_assert_eq!(final_of(e, run), *state, "run {} state", run);
        if let Some(value) = value {
            prop_assert_eq!(value_of(e, run), Ok(*value), "run {} value", run);
        }
        prop_assert_eq!(e.executor().exec_count(run), *execs, "run {} executions", run);
        let attempts: Vec<u32> = e.executor().execs_of(run).iter().map(|x| x.attempt).collect();
        prop_assert_eq!(attempts, (0..*execs as u32).collect::<Vec<_>>(), "run {} attempts", run);
        if *state == Final::NotReady {
            // Names a direct, strict upstream that did not complete.
            let named: RunId = value_of(e, run)
                .unwrap_err()
                .trim_start_matches("not ready: upstream ")
                .parse()
                .unwrap();
            let node = &case.nodes[run as usize];
            prop_assert!(
                node.deps
                    .iter()
                    .any(|&(up, allow)| up as RunId == named && !allow && expected[up].0 != Final::Completed),
                "run {} names {} as its failed upstream",
                run,
                named
            );
        }
    }
    Ok(())
}

proptest! {
    // Failures here are often timing-dependent, so replaying persisted seeds proves little:
    // the report prints the case, and the targeted tests in engine.rs pin known races.
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_match_the_oracle(case in case()) {
        run_case(&case)?;
    }
}
