//! In-guest test runner, started by the guest's /init (tests/vm/init).
//!
//! `heapland-guest --phases` lists the phases; `heapland-guest <phase>` runs one phase and
//! prints `PASS name` or `FAIL name: reason` per test, then `PHASE <phase> done`. A test
//! that panics is caught and counted as a failure. The exit status is non-zero if any
//! test failed. `heapland-guest --after <phase>` puts the guest back into the state later
//! phases expect (after `removal`: module and vivid loaded, vivid.0's contiguous heap).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use heapland_tests::guest::{self, accounting, concurrency, grants, removal, stress};

fn one_line(s: &str) -> String {
    s.replace('\n', " | ")
}

fn run_phase(phase: &guest::Phase) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    for t in (phase.tests)() {
        let start = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(t.run));
        let secs = start.elapsed().as_secs_f64();
        match r {
            Ok(Ok(())) => {
                passed += 1;
                println!("PASS {} ({secs:.2} s)", t.name);
            }
            Ok(Err(e)) => {
                failed += 1;
                println!("FAIL {}: {}", t.name, one_line(&e));
            }
            Err(p) => {
                failed += 1;
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                println!("FAIL {}: panicked: {}", t.name, one_line(&msg));
            }
        }
        let _ = std::io::stdout().flush();
    }
    println!(
        "PHASE {} done: {passed} passed, {failed} failed",
        phase.name
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let phases = guest::phases();
    match args.first().map(String::as_str) {
        Some("--phases") => {
            for p in &phases {
                println!("{}", p.name);
            }
            ExitCode::SUCCESS
        }
        Some("--phases-for") if args.len() == 2 => {
            for p in guest::phases_for(&args[1]) {
                println!("{}", p.name);
            }
            ExitCode::SUCCESS
        }
        // Settle the guest after a phase that changes it (run by /init after every phase).
        Some("--after") if args.len() == 2 => {
            let r = match args[1].as_str() {
                "removal" => removal::restore(),
                _ => Ok(()),
            };
            match r {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    println!("FAIL phase::{}::restore: {}", args[1], one_line(&e));
                    ExitCode::FAILURE
                }
            }
        }
        Some(concurrency::CHILD_FLAG) if args.len() == 4 => {
            let (iters, seed) = match (args[2].parse(), args[3].parse()) {
                (Ok(i), Ok(s)) => (i, s),
                _ => {
                    eprintln!("bad arguments to {}", concurrency::CHILD_FLAG);
                    return ExitCode::from(2);
                }
            };
            match concurrency::child_main(&args[1], iters, seed) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(stress::CHILD_FLAG) if args.len() >= 4 => {
            let (Ok(seconds), Ok(seed)) = (args[1].parse(), args[2].parse()) else {
                eprintln!("bad arguments to {}", stress::CHILD_FLAG);
                return ExitCode::from(2);
            };
            match stress::child_main(seconds, seed, &args[3..]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(grants::CHILD_FLAG) if (3..=4).contains(&args.len()) => {
            let groups: Result<Vec<u32>, _> = args
                .get(3)
                .map(|g| g.split(',').map(str::parse).collect())
                .unwrap_or(Ok(Vec::new()));
            let (Ok(uid), Ok(groups)) = (args[1].parse(), groups) else {
                eprintln!("bad arguments to {}", grants::CHILD_FLAG);
                return ExitCode::from(2);
            };
            match grants::child_main(uid, std::path::Path::new(&args[2]), &groups) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(accounting::CHILD_FLAG) if (3..=4).contains(&args.len()) => {
            let (Ok(chunk), Ok(uid)) =
                (args[2].parse(), args.get(3).map(|u| u.parse()).transpose())
            else {
                eprintln!("bad arguments to {}", accounting::CHILD_FLAG);
                return ExitCode::from(2);
            };
            match accounting::child_main(&args[1], chunk, uid) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(name) => match phases.iter().find(|p| p.name == name) {
            Some(p) => run_phase(p),
            None => {
                eprintln!("unknown phase {name}; phases: --phases");
                ExitCode::from(2)
            }
        },
        None => {
            eprintln!("usage: heapland-guest --phases | <phase>");
            ExitCode::from(2)
        }
    }
}
