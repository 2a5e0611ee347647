//! A panic ends the process, and with `--log-format json` it is one JSON
//! record, not Rust's plain-text report (issue 29): the child below is
//! this test binary run again, with the node's own logging and panic hook,
//! panicking on a thread of its own as a shard would.

use std::process::Command;

const CHILD: &str = "CAXTON_TEST_PANIC_CHILD";

/// In the child: the node's logging and hook, then a panic on a named thread.
fn panic_as_the_node_would(format: caxton::logging::LogFormat) -> ! {
    caxton::logging::init(format);
    caxton::logging::abort_on_panic();
    let shard = std::thread::Builder::new().name("caxton-shard-0".into()).spawn(|| {
        let limit = 3;
        panic!("a \"quoted\" invariant broke: {limit} of {limit}");
    });
    let _ = shard.unwrap().join();
    unreachable!("the hook aborts the process");
}

/// Runs `test` of this binary again as the child; its stderr and whether
/// it was aborted (SIGABRT).
fn child(test: &str, format: &str) -> (String, bool) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, format)
        .env("RUST_BACKTRACE", "1")
        .env_remove("CAXTON_LOG")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    (String::from_utf8_lossy(&out.stderr).into_owned(), out.status.signal() == Some(libc::SIGABRT))
}

#[test]
fn with_json_logs_a_panic_is_one_json_record_and_the_process_aborts() {
    if std::env::var(CHILD).as_deref() == Ok("json") {
        panic_as_the_node_would(caxton::logging::LogFormat::Json);
    }
    let (stderr, aborted) = child("with_json_logs_a_panic_is_one_json_record_and_the_process_aborts", "json");
    assert!(aborted, "{stderr}");
    // Every line the node wrote parses; the panic is one of them.
    let records: Vec<serde_json::Value> =
        stderr.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let strays: Vec<&str> = stderr.lines().filter(|l| !l.starts_with('{') && !l.starts_with("running ") && !l.trim().is_empty()).collect();
    assert!(strays.is_empty(), "plain text beside the JSON: {strays:?}");
    let [panic] = records.as_slice() else { panic!("one record: {stderr}") };
    assert_eq!(panic["level"], "ERROR");
    assert_eq!(panic["target"], "caxton::panic");
    let fields = &panic["fields"];
    assert_eq!(fields["thread"], "caxton-shard-0");
    assert_eq!(fields["panic"], "a \"quoted\" invariant broke: 3 of 3");
    assert!(fields["location"].as_str().is_some_and(|l| l.starts_with("tests/panics.rs:")), "{fields}");
    assert!(fields["message"].as_str().is_some_and(|m| m.contains("aborting the process")), "{fields}");
    assert!(fields["backtrace"].as_str().is_some_and(|b| b.contains("panic_as_the_node_would")), "RUST_BACKTRACE=1 asks for it: {fields}");
}

#[test]
fn with_text_logs_a_panic_is_rusts_report_and_the_process_aborts() {
    if std::env::var(CHILD).as_deref() == Ok("text") {
        panic_as_the_node_would(caxton::logging::LogFormat::Human);
    }
    let (stderr, aborted) = child("with_text_logs_a_panic_is_rusts_report_and_the_process_aborts", "text");
    assert!(aborted, "{stderr}");
    assert!(stderr.contains("thread 'caxton-shard-0'") && stderr.contains("invariant broke"), "{stderr}");
    assert!(stderr.contains("caxton: a thread panicked: aborting the process"), "{stderr}");
}
