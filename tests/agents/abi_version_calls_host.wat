;; abi_version_calls_host: `caxton_abi_version` and the fixed inbox's exports
;; call host functions (timer_cancel, send to `counter`, state_put) while
;; the instance is being made, before `caxton_init`. `caxton_init` returns
;; the i32 at offset 512 (0 here; the tests make a variant that returns 1,
;; to fail an upgrade's trial). Each send is counted by `counter` only if
;; the start it belongs to is kept.
(module
  (import "caxton" "timer_cancel" (func $cancel (param i64) (result i32)))
  (import "caxton" "state_put" (func $put (param i32 i32 i32 i32) (result i32)))
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "k")
  (data (i32.const 256) "\01\01\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\00\07\00\00\01\00\00\00\63\6f\75\6e\74\65\72\73")
  (data (i32.const 512) "\00\00\00\00")
  (func (export "caxton_abi_version") (result i32)
    (drop (call $cancel (i64.const 1)))
    (drop (call $put (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
    (drop (call $send (i32.const 256) (i32.const 52)))
    (i32.const 1))
  (func (export "caxton_inbox_ptr") (result i32)
    (drop (call $send (i32.const 256) (i32.const 52)))
    (i32.const 4096))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 4096))
  (func (export "caxton_init") (result i32) (i32.load (i32.const 512)))
  (func (export "caxton_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "caxton_handle") (param i32 i32) (result i32) (i32.const 0)))
